"""Host-side image transforms (numpy / OpenCV / simplejpeg); they ship uint8 to the device.

Two training flavours, matching the two TensorFlow references:

* ``"tf_vision"`` (TF Model Garden ``classification_input``): crop window from
  ``sample_distorted_bounding_box`` (min_object_covered = 0.08, area 0.08-1, aspect 3/4-4/3,
  10 attempts; if all fail, the whole image), crop, bilinear resize, random flip.
* ``"tf_tpu"`` (TF-TPU EfficientNet ``preprocessing.py``): the same sampler with
  min_object_covered = 0.1; if the window is the whole image (all attempts failed) it falls back
  to the evaluation centre crop; crop-aware decode, bicubic resize, random flip.

The sampler reproduces the TensorFlow kernel's integer arithmetic: the aspect ratio (width /
height) is drawn uniformly (not log-uniformly) from the range, the height uniformly between the
heights that give the minimum and maximum area. Random numbers come from numpy, so crops match
TensorFlow's distribution, not its exact draws. OpenCV's bicubic uses a = -0.75 with half-pixel
centres; TF1's legacy ``resize_bicubic`` uses a = -0.75 without the half-pixel offset, a sub-pixel
shift we do not reproduce. Outputs are rounded to uint8 (the references keep float32).
"""

from __future__ import annotations

import math
from typing import Callable

import cv2
import numpy as np

from flaxnets.data.decode import decode_crop, image_size

# What TF-TPU's `_decode_and_center_crop` adds to the image size: crop = size / (size + 32).
CROP_PADDING = 32

INTERPOLATIONS = {
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "nearest": cv2.INTER_NEAREST,
}

CROPS = {
    # flavour: (min_object_covered, interpolation, whole image -> centre crop)
    "tf_vision": (0.08, "bilinear", False),
    "tf_tpu": (0.1, "bicubic", True),
}

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _round_half_even_int(value: float) -> int:
    # lrintf in the TF kernel rounds half to even under the default rounding mode.
    return int(np.rint(np.float32(value)))


def _random_crop_window(
    height: int, width: int, min_area: float, max_area: float, aspect_ratio: float, rng
) -> tuple[int, int, int, int] | None:
    """TensorFlow's GenerateRandomCrop: one attempt at a (y, x, h, w) window, or None."""
    crop_h = _round_half_even_int(math.sqrt(min_area / aspect_ratio))
    max_h = _round_half_even_int(math.sqrt(max_area / aspect_ratio))
    if _round_half_even_int(max_h * aspect_ratio) > width:
        max_h = int((width + 0.5 - 1e-7) / aspect_ratio)
        if _round_half_even_int(max_h * aspect_ratio) > width:
            max_h -= 1
    max_h = min(max_h, height)
    crop_h = min(crop_h, max_h)
    if crop_h < max_h:
        crop_h += int(rng.integers(0, max_h - crop_h + 1))
    crop_w = _round_half_even_int(crop_h * aspect_ratio)
    area = crop_w * crop_h
    # Rounding may leave the area just outside the range: try one row more, then one less.
    if area < min_area:
        crop_h += 1
        crop_w = _round_half_even_int(crop_h * aspect_ratio)
        area = crop_w * crop_h
    if area > max_area:
        crop_h -= 1
        crop_w = _round_half_even_int(crop_h * aspect_ratio)
        area = crop_w * crop_h
    if not (min_area <= area <= max_area and 0 < crop_w <= width and 0 < crop_h <= height):
        return None
    # Uniform(n) in the kernel draws from [0, n): the last offset is never chosen, as there.
    y = int(rng.integers(0, height - crop_h)) if crop_h < height else 0
    x = int(rng.integers(0, width - crop_w)) if crop_w < width else 0
    return y, x, crop_h, crop_w


def sample_distorted_bounding_box(
    height: int,
    width: int,
    rng: np.random.Generator,
    *,
    min_object_covered: float = 0.1,
    area_range: tuple[float, float] = (0.08, 1.0),
    aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3),
    max_attempts: int = 10,
) -> tuple[tuple[int, int, int, int], bool]:
    """A random crop window (y, x, h, w) as `tf.image.sample_distorted_bounding_box` draws it
    with the whole image as the only bounding box.

    Returns (window, sampled): `sampled` is False when every attempt failed and the window is the
    whole image (TensorFlow's fallback).
    """
    image_area = height * width
    for _ in range(max_attempts):
        aspect_ratio = rng.uniform(aspect_ratio_range[0], aspect_ratio_range[1])
        window = _random_crop_window(
            height, width, area_range[0] * image_area, area_range[1] * image_area, aspect_ratio, rng
        )
        # The only box is the whole image, so "object covered" is the crop's area fraction.
        if window is not None and window[2] * window[3] >= min_object_covered * image_area:
            return window, True
    return (0, 0, height, width), False


def center_crop_window(height: int, width: int, crop_fraction: float) -> tuple[int, int, int, int]:
    """TF-TPU's `_decode_and_center_crop` window, with size / (size + 32) as `crop_fraction`:
    a square of int(crop_fraction * min(h, w)) pixels, offset ((h - crop + 1) // 2, ...)."""
    crop = int(np.float32(crop_fraction) * np.float32(min(height, width)))
    crop = max(crop, 1)
    return (height - crop + 1) // 2, (width - crop + 1) // 2, crop, crop


def resize(image: np.ndarray, size: int, interpolation: str) -> np.ndarray:
    """Resize an HWC uint8 image to size x size with OpenCV (no antialiasing, like tf.image)."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation {interpolation!r}: expected one of {sorted(INTERPOLATIONS)}")
    if image.shape[0] == size and image.shape[1] == size:
        return np.ascontiguousarray(image)
    # A crop (row/column slice) is a valid OpenCV ROI: no copy needed.
    return cv2.resize(image, (size, size), interpolation=INTERPOLATIONS[interpolation])


def train_transform(
    data: bytes,
    rng: np.random.Generator,
    *,
    image_size_px: int,
    crop: str = "tf_vision",
    augment: Augment | None = None,
    fast_decode: bool = True,
    area_range: tuple[float, float] = (0.08, 1.0),
    aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = True,
) -> np.ndarray:
    """Decode, random-resized-crop, resize, flip (and `augment`) one encoded training image.

    `area_range` / `aspect_ratio_range`: the crop sampler's ranges (the references' defaults);
    `flip`: random horizontal flip with probability 1/2.

    Raises `flaxnets.data.decode.DecodeError` for undecodable data.
    """
    if crop not in CROPS:
        raise ValueError(f"crop {crop!r}: expected one of {sorted(CROPS)}")
    min_object_covered, interpolation, whole_to_center = CROPS[crop]
    height, width = image_size(data)
    window, _ = sample_distorted_bounding_box(
        height, width, rng, min_object_covered=min(min_object_covered, area_range[0]),
        area_range=area_range, aspect_ratio_range=aspect_ratio_range,
    )
    # TF-TPU checks the crop's shape, so a sampled whole-image window also falls back.
    if whole_to_center and window[2:] == (height, width):
        window = center_crop_window(height, width, image_size_px / (image_size_px + CROP_PADDING))
    image = decode_crop(data, window, (image_size_px, image_size_px), fast=fast_decode)
    image = resize(image, image_size_px, interpolation)
    if flip and rng.random() < 0.5:
        image = cv2.flip(image, 1)
    if augment is not None:
        image = augment(image, rng)
    return np.ascontiguousarray(image, dtype=np.uint8)


def eval_transform(
    data: bytes, *, image_size_px: int, crop_fraction: float, interpolation: str
) -> np.ndarray:
    """Decode, centre-crop (`center_crop_window`) and resize one encoded evaluation image."""
    height, width = image_size(data)
    window = center_crop_window(height, width, crop_fraction)
    image = decode_crop(data, window, (image_size_px, image_size_px), fast=False)
    return resize(image, image_size_px, interpolation)


def normalize(images, mean, std):
    """Device-side normalisation: (float32(images) - mean) / std, mean and std on the 0-255
    scale (per channel or scalar). Imports JAX lazily so the host pipeline does not need it."""
    import jax.numpy as jnp

    mean = jnp.asarray(mean, dtype=jnp.float32)
    std = jnp.asarray(std, dtype=jnp.float32)
    return (jnp.asarray(images).astype(jnp.float32) - mean) / std

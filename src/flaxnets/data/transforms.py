"""Host-side image transforms (numpy / OpenCV / TurboJPEG); they ship uint8 to the device.

Three training flavours (`data.crop`), each the reference's training parser without its
normalisation (which runs on the device, `normalize`):

* ``"tf_vision"``: TF Model Garden ``official/vision/dataloaders/classification_input.py``
  (`Parser._parse_train_image` with `decode_jpeg_only`): crop window from
  `sample_distorted_bounding_box` (min_object_covered = area_range[0] = 0.08, area 0.08-1,
  aspect 3/4-4/3, 10 attempts); when the window is the whole image it takes
  `center_crop_image_v2` (`official/vision/ops/preprocess_ops.py`: a square of
  int(0.875 * min(h, w)) pixels at offset int((h - 0.875 * min(h, w)) / 2)) instead; region
  decode, random flip, `tf.image.resize` (half-pixel centres, no antialias; bilinear by default).
* ``"tf_tpu"``: TF-TPU EfficientNet ``models/official/efficientnet/preprocessing.py``
  (`_decode_and_random_crop`): the same sampler with min_object_covered = 0.1; a whole-image
  window falls back to `_decode_and_center_crop` (int(size / (size + 32) * min(h, w)) pixels,
  offset (h - crop + 1) // 2); region decode, TF1 `resize_bicubic` (no half-pixel offset,
  a = -0.75) by default, random flip.
* ``"inception"``: TF-slim ``research/slim/preprocessing/inception_preprocessing.py``
  (`preprocess_for_train`): `distorted_bounding_box_crop` (min_object_covered 0.1, area
  0.05-1, aspect 0.75-1.33, 100 attempts; no fallback), TF1 `resize_images` (bilinear in fast
  mode, otherwise a method drawn uniformly from bilinear, nearest, bicubic, area), random flip,
  `distort_color` (`flaxnets.data.inception`), all in float; rounded to uint8 once at the end.
  Normalise with mean = std = 127.5 for TF-slim's [-1, 1].

Both TF references compare the crop's shape with `extract_jpeg_shape`, channels included, so
the centre-crop fallback happens only for 3-component JPEGs (greyscale and CMYK files keep the
whole image); non-JPEG files, which they cannot read, fall back like colour JPEGs.

The crop is decoded at full resolution (`decode_crop`: exactly the pixels of tf.data's
`decode_and_crop_jpeg`) and resized without antialiasing, so the output is the reference's
pixels rounded to uint8 (tests/data/test_reference_parity.py holds each flavour to goldens
made with the reference code). `dct_scaled_decode=True` is the opt-in fast path that decodes
at a reduced DCT scale first (docs/BENCHMARKS.md: its speed-up and pixel difference).

Resizing follows each reference's convention (`resize`): TF2 `tf.image.resize` maps output
pixel centres to (x + 0.5) * in / out - 0.5 (OpenCV's convention; bicubic there is Keys' a =
-0.5 with the weights renormalised at the borders, computed here as weighted gathers);
TF1's `resize_bilinear` / `resize_bicubic` / `resize_nearest_neighbor` with align_corners=False
map x to x * in / out and clamp at the borders (OpenCV `warpAffine` with a pure scale and
replicated borders; bicubic a = -0.75). `area` is the box filter in both (OpenCV INTER_AREA).
One reference behaviour is deliberately not reproduced: with "nearest", `tf.image.resize` keeps
uint8 and both TF references then convert with `convert_image_dtype`, which divides by 255, so
their network sees 0-1 pixels; ours stay on the 0-255 scale like every other method.

The sampler reproduces the TensorFlow kernel's integer arithmetic: the aspect ratio (width /
height) is drawn uniformly (not log-uniformly) from the range, the height uniformly between the
heights that give the minimum and maximum area (tests/data/test_crop_distribution.py compares
the distributions with TensorFlow's). Random numbers come from numpy, so crops match
TensorFlow's distribution, not its exact draws. The evaluation transform uses the flavour's
centre-crop arithmetic and resize convention too.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from flaxnets.data import inception
from flaxnets.data.decode import decode_crop, image_header, image_size

# What TF-TPU's `_decode_and_center_crop` adds to the image size: crop = size / (size + 32).
CROP_PADDING = 32
# TF-Vision's `CENTER_CROP_FRACTION`, the default of `center_crop_image_v2`, which its training
# fallback calls without a fraction.
TF_VISION_CENTER_CROP_FRACTION = 0.875

INTERPOLATIONS = {
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "nearest": cv2.INTER_NEAREST,
}


@dataclass(frozen=True)
class CropFlavour:
    """One reference's training crop and resize (see the module docstring)."""

    #: The sampler's min_object_covered (None: the area range's minimum, as TF-Vision passes).
    min_object_covered: float | None
    area_range: tuple[float, float]
    aspect_ratio_range: tuple[float, float]
    max_attempts: int
    #: The training resize method when `data.interpolation` is None.
    interpolation: str
    #: tf.image.resize (TF2) pixel centres; False: TF1 resize_* with align_corners=False.
    half_pixel_centers: bool
    #: Centre-crop arithmetic of the evaluation crop and the fallback: `center_crop_window`.
    centre_crop: str
    #: A whole-image window (of a 3-component image) becomes the centre crop.
    fallback: bool


CROPS = {
    "tf_vision": CropFlavour(None, (0.08, 1.0), (3 / 4, 4 / 3), 10, "bilinear", True,
                             "tf_vision", True),
    "tf_tpu": CropFlavour(0.1, (0.08, 1.0), (3 / 4, 4 / 3), 10, "bicubic", False, "tf_tpu", True),
    "inception": CropFlavour(0.1, (0.05, 1.0), (0.75, 1.33), 100, "bilinear", False, "tf_slim",
                             False),
}

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def crop_flavour(crop: str) -> CropFlavour:
    """The `CROPS` entry for `crop`, or ValueError naming the choices."""
    if crop not in CROPS:
        raise ValueError(f"crop {crop!r}: expected one of {sorted(CROPS)}")
    return CROPS[crop]


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


def center_crop_window(
    height: int, width: int, crop_fraction: float, arithmetic: str = "tf_tpu"
) -> tuple[int, int, int, int]:
    """A centre crop (y, x, h, w) with one reference's arithmetic:

    * "tf_tpu" (`_decode_and_center_crop`, with size / (size + 32) as `crop_fraction`): a square
      of int(crop_fraction * min(h, w)) pixels (float32), offset ((h - crop + 1) // 2, ...);
    * "tf_vision" (`center_crop_image_v2`): the same square, offset int((h - crop_fraction *
      min(h, w)) / 2) computed from the unrounded float32 side;
    * "tf_slim" (`tf.image.central_crop`): each side keeps the fraction, not a square: offset
      int((h - h * crop_fraction) / 2) (float64), size h - 2 * offset.
    """
    if arithmetic == "tf_slim":
        if crop_fraction >= 1.0:
            return 0, 0, height, width
        y = int((height - height * crop_fraction) / 2)
        x = int((width - width * crop_fraction) / 2)
        return y, x, height - 2 * y, width - 2 * x
    side = np.float32(crop_fraction) * np.float32(min(height, width))
    crop = max(int(side), 1)
    if arithmetic == "tf_vision":
        half = np.float32(2)
        y = int((np.float32(height) - side) / half)
        x = int((np.float32(width) - side) / half)
        return y, x, crop, crop
    if arithmetic != "tf_tpu":
        raise ValueError(f"centre-crop arithmetic {arithmetic!r}: expected tf_tpu, tf_vision or tf_slim")
    return (height - crop + 1) // 2, (width - crop + 1) // 2, crop, crop


def _keys_cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic kernel with a = -0.5 (TensorFlow's `KeysCubicKernelFunc`)."""
    x = np.abs(x)
    near = ((1.5 * x - 2.5) * x) * x + 1
    far = ((-0.5 * x + 2.5) * x - 4) * x + 2
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


@functools.lru_cache(maxsize=512)
def _keys_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights, both (out, 4), of TF2 `tf.image.resize(method="bicubic",
    antialias=False)` along one axis (`ScaleAndTranslate`: half-pixel centres, the kernel's
    four taps, taps outside the image dropped and the rest renormalised)."""
    sample = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size)
    first = np.floor(sample - 0.5).astype(np.int64) - 1
    taps = first[:, None] + np.arange(4)
    weights = _keys_cubic(taps + 0.5 - sample[:, None])
    weights[(taps < 0) | (taps >= in_size)] = 0
    weights /= weights.sum(axis=1, keepdims=True)
    return np.clip(taps, 0, in_size - 1), weights.astype(np.float32)


def _keys_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Separable Keys bicubic as four weighted row gathers, then four column gathers."""
    rows, row_weights = _keys_taps(image.shape[0], size)
    cols, col_weights = _keys_taps(image.shape[1], size)
    image = image.astype(np.float32)
    out = sum(row_weights[:, k, None, None] * image[rows[:, k]] for k in range(4))
    out = sum(col_weights[None, :, k, None] * out[:, cols[:, k]] for k in range(4))
    return out


def _nearest_indices(in_size: int, out_size: int, half_pixel_centers: bool) -> np.ndarray:
    """Source index per output index of TensorFlow's `resize_nearest_neighbor` (float32 scale)."""
    scale = np.float32(in_size / out_size)
    position = np.arange(out_size, dtype=np.float32)
    if half_pixel_centers:
        position = position + np.float32(0.5)
    return np.clip(np.floor(position * scale).astype(np.int64), 0, in_size - 1)


def resize(
    image: np.ndarray, size: int, interpolation: str, *, half_pixel_centers: bool = True
) -> np.ndarray:
    """Resize an HWC image (uint8 or float32) to size x size without antialiasing, with
    TensorFlow's pixel-centre convention: `half_pixel_centers` as TF2 `tf.image.resize`,
    otherwise TF1's `resize_*` with align_corners=False (see the module docstring). The output
    has the input's dtype (uint8 rounded)."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation {interpolation!r}: expected one of {sorted(INTERPOLATIONS)}")
    height, width = image.shape[:2]
    if interpolation == "nearest":
        rows = _nearest_indices(height, size, half_pixel_centers)
        cols = _nearest_indices(width, size, half_pixel_centers)
        return np.take(np.take(image, rows, axis=0), cols, axis=1)
    if height == size and width == size:
        return np.ascontiguousarray(image)
    if interpolation == "area":
        return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    if half_pixel_centers:
        if interpolation == "bilinear":
            # A crop (row/column slice) is a valid OpenCV ROI: no copy needed.
            return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
        out = _keys_resize(image, size)
        if image.dtype == np.uint8:
            return np.clip(np.rint(out), 0, 255).astype(np.uint8)
        return out
    matrix = np.array([[width / size, 0, 0], [0, height / size, 0]], np.float64)
    return cv2.warpAffine(image, matrix, (size, size),
                          flags=INTERPOLATIONS[interpolation] | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def _inception_tail(image, rng, size, interpolation, flip, fast_mode) -> np.ndarray:
    """TF-slim `preprocess_for_train` after the crop: resize, flip, `distort_color`, in float."""
    if interpolation is None:
        interpolation = "bilinear" if fast_mode else inception.RESIZE_METHODS[
            int(rng.integers(len(inception.RESIZE_METHODS)))]
    image = resize(image.astype(np.float32), size, interpolation, half_pixel_centers=False)
    if flip and rng.random() < 0.5:
        image = image[:, ::-1]
    image = inception.distort_color(image, rng, fast_mode=fast_mode)
    return np.rint(image).astype(np.uint8)


def train_transform(
    data: bytes,
    rng: np.random.Generator,
    *,
    image_size_px: int,
    crop: str = "tf_vision",
    interpolation: str | None = None,
    augment: Augment | None = None,
    dct_scaled_decode: bool = False,
    area_range: tuple[float, float] | None = None,
    aspect_ratio_range: tuple[float, float] | None = None,
    flip: bool = True,
    fallback_crop_fraction: float | None = None,
    inception_fast_mode: bool = True,
) -> np.ndarray:
    """Decode, random-resized-crop, resize, flip (and `augment`) one encoded training image,
    as the `crop` flavour's reference does (see the module docstring).

    `interpolation`: the resize method (None: the flavour's); `dct_scaled_decode`: decode JPEGs
    at a reduced DCT scale first (faster, not the references' pixels); `area_range` /
    `aspect_ratio_range`: the crop sampler's ranges (None: the flavour's); `flip`: random
    horizontal flip with probability 1/2; `fallback_crop_fraction`: the centre crop a
    whole-image window falls back to (None: 0.875 for tf_vision, size / (size + 32) for
    tf_tpu); `inception_fast_mode`: TF-slim's `fast_mode` (inception only).

    Raises `flaxnets.data.decode.DecodeError` for undecodable data.
    """
    flavour = crop_flavour(crop)
    area_range = flavour.area_range if area_range is None else tuple(area_range)
    aspect_ratio_range = (flavour.aspect_ratio_range if aspect_ratio_range is None
                          else tuple(aspect_ratio_range))
    min_object_covered = (area_range[0] if flavour.min_object_covered is None
                          else flavour.min_object_covered)
    height, width, channels = image_header(data)
    window, _ = sample_distorted_bounding_box(
        height, width, rng, min_object_covered=min_object_covered, area_range=area_range,
        aspect_ratio_range=aspect_ratio_range, max_attempts=flavour.max_attempts,
    )
    # The references compare the crop's [h, w, 3] with the file's [h, w, channels], so a
    # sampled whole-image window falls back too, and a greyscale JPEG never does.
    if flavour.fallback and window[2:] == (height, width) and channels == 3:
        if fallback_crop_fraction is None:
            fallback_crop_fraction = (TF_VISION_CENTER_CROP_FRACTION if crop == "tf_vision"
                                      else image_size_px / (image_size_px + CROP_PADDING))
        window = center_crop_window(height, width, fallback_crop_fraction, flavour.centre_crop)
    image = decode_crop(data, window, (image_size_px, image_size_px), dct_scaled=dct_scaled_decode)
    if crop == "inception":
        image = _inception_tail(image, rng, image_size_px, interpolation, flip, inception_fast_mode)
    else:
        image = resize(image, image_size_px, interpolation or flavour.interpolation,
                       half_pixel_centers=flavour.half_pixel_centers)
        if flip and rng.random() < 0.5:
            image = cv2.flip(image, 1)
    if augment is not None:
        image = augment(image, rng)
    return np.ascontiguousarray(image, dtype=np.uint8)


def eval_transform(
    data: bytes, *, image_size_px: int, crop_fraction: float, interpolation: str,
    crop: str = "tf_vision",
) -> np.ndarray:
    """Decode, centre-crop and resize one encoded evaluation image as the `crop` flavour's
    reference evaluates: its centre-crop arithmetic (`center_crop_window`) and resize convention
    (TF-slim's eval resizes its float image, as here)."""
    flavour = crop_flavour(crop)
    height, width = image_size(data)
    window = center_crop_window(height, width, crop_fraction, flavour.centre_crop)
    image = decode_crop(data, window, (image_size_px, image_size_px))
    if crop == "inception":
        image = resize(image.astype(np.float32), image_size_px, interpolation, half_pixel_centers=False)
        return np.rint(np.clip(image, 0, 255)).astype(np.uint8)
    return resize(image, image_size_px, interpolation, half_pixel_centers=flavour.half_pixel_centers)


def normalize(images, mean, std, dtype="float32"):
    """Device-side normalisation: (float32(images) - mean) / std, mean and std on the 0-255
    scale (per channel or scalar), computed in `dtype` (float64 only for the float64 reference
    trajectories, under jax_enable_x64). Imports JAX lazily so the host pipeline does not need it."""
    import jax.numpy as jnp

    mean = jnp.asarray(mean, dtype=dtype)
    std = jnp.asarray(std, dtype=dtype)
    return (jnp.asarray(images).astype(dtype) - mean) / std

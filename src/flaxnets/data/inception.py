"""TF-slim Inception colour distortion (`distort_color` in
`research/slim/preprocessing/inception_preprocessing.py`, tensorflow/models) on the host.

TF-slim converts the image to float32 in [0, 1] before cropping and keeps it in float until the
final [-1, 1] scaling. These functions take and return float32 images on the 0-255 scale (the
same values times 255, so the transform can round once to uint8 at the end); brightness deltas
are scaled accordingly, the other ops are scale-invariant. Each op is the TensorFlow kernel's
arithmetic:

* brightness (`tf.image.adjust_brightness` on float): adds the delta, no clipping;
* saturation (the `AdjustSaturation` kernel): RGB -> HSV, S scaled and clipped to [0, 1],
  HSV -> RGB. Hue and value are kept, so each channel moves along the line to the maximum
  channel: c' = V - V * S' * (V - c) / (V - min), S' = clip(f * (V - min) / V, 0, 1) (S' = 0
  where V <= 0), which is what `rgb_to_hsv` / `hsv_to_rgb` compute;
* hue (the `AdjustHue` kernel): the hue is shifted modulo 1 with each pixel's minimum and
  maximum channel kept;
* contrast (`adjust_contrastv2`): (x - mean) * f + mean with each channel's mean over the image.

`distort_color` draws the factors as TF-slim does (brightness delta uniform in +-32/255,
saturation and contrast factors uniform in [0.5, 1.5), hue delta uniform in +-0.2) and clips to
the valid range at the end. In fast mode (the file's default, used by `preprocess_image`) only
brightness and saturation run; TF-slim then draws among one ordering, so brightness always comes
first. Without fast mode one of the four orderings is drawn uniformly. Random draws come from a
`numpy.random.Generator`: the distributions match TF-slim's, not its random streams.
"""

from __future__ import annotations

import numpy as np

# tf.image.ResizeMethod's TF1 order, from which `apply_with_random_selector` draws an index.
RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area")

BRIGHTNESS_MAX_DELTA = 32.0  # 32 / 255 on TF-slim's [0, 1] scale
SATURATION_RANGE = (0.5, 1.5)
HUE_MAX_DELTA = 0.2
CONTRAST_RANGE = (0.5, 1.5)

# distort_color's orderings without fast mode (color_ordering 0-3); fast mode keeps only the
# brightness and saturation of ordering 0.
ORDERINGS = (
    ("brightness", "saturation", "hue", "contrast"),
    ("saturation", "brightness", "contrast", "hue"),
    ("contrast", "hue", "brightness", "saturation"),
    ("hue", "saturation", "contrast", "brightness"),
)
FAST_ORDERING = ("brightness", "saturation")


def adjust_brightness(image: np.ndarray, delta: float) -> np.ndarray:
    """image + delta (0-255 scale), unclipped, as `tf.image.adjust_brightness` on floats."""
    return image + np.float32(delta)


def adjust_saturation(image: np.ndarray, factor: float) -> np.ndarray:
    """TensorFlow's `AdjustSaturation` kernel on a float32 RGB image (see the module docstring)."""
    value = image.max(axis=2, keepdims=True)
    spread = value - image.min(axis=2, keepdims=True)
    positive = value > 0
    saturation = np.where(positive, spread / np.where(positive, value, 1), 0)
    scaled = np.clip(saturation * np.float32(factor), 0, 1)
    ratio = np.where(spread > 0, (value - image) / np.where(spread > 0, spread, 1), 0)
    return (value - value * scaled * ratio).astype(np.float32)


def adjust_hue(image: np.ndarray, delta: float) -> np.ndarray:
    """TensorFlow's `AdjustHue` kernel on a float32 RGB image: hue + delta modulo 1, each
    pixel's minimum and maximum channel kept."""
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    high = image.max(axis=2)
    low = image.min(axis=2)
    spread = high - low
    norm = np.float32(1) / (np.float32(6) * np.where(spread > 0, spread, 1))
    hue = np.where(r == high, norm * (g - b),
                   np.where(g == high, norm * (b - r) + np.float32(2 / 6),
                            norm * (r - g) + np.float32(4 / 6)))
    hue = np.where(spread > 0, hue, 0)
    hue = np.where(hue < 0, hue + 1, hue)
    hue = np.fmod(hue + np.float32(delta), np.float32(1))
    hue = np.where(hue < 0, hue + 1, hue)
    sextant = hue * 6
    category = np.floor(sextant)
    fraction = sextant - category
    rising = low + fraction * spread
    falling = high - fraction * spread
    category = category.astype(np.int64) % 6
    # (r, g, b) per sextant, as hv_range_to_rgb in the kernel.
    choices = (
        (high, rising, low), (falling, high, low), (low, high, rising),
        (low, falling, high), (rising, low, high), (high, low, falling),
    )
    out = np.empty_like(image)
    for channel in range(3):
        out[..., channel] = np.choose(category, [c[channel] for c in choices])
    return out


def adjust_contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """(x - mean) * factor + mean per channel, as `tf.image.adjust_contrast`."""
    mean = image.mean(axis=(0, 1), dtype=np.float64).astype(np.float32)
    return ((image - mean) * np.float32(factor) + mean).astype(np.float32)


_OPS = {
    "brightness": adjust_brightness,
    "saturation": adjust_saturation,
    "hue": adjust_hue,
    "contrast": adjust_contrast,
}


def draw_factor(name: str, rng: np.random.Generator) -> float:
    """One random factor (delta) for colour op `name`, from TF-slim's ranges (0-255 scale)."""
    if name == "brightness":
        return float(rng.uniform(-BRIGHTNESS_MAX_DELTA, BRIGHTNESS_MAX_DELTA))
    if name == "saturation":
        return float(rng.uniform(*SATURATION_RANGE))
    if name == "hue":
        return float(rng.uniform(-HUE_MAX_DELTA, HUE_MAX_DELTA))
    return float(rng.uniform(*CONTRAST_RANGE))


def apply_colour_ops(image: np.ndarray, ops: list[tuple[str, float]]) -> np.ndarray:
    """Apply (op name, factor) pairs in order, then clip to [0, 255] (distort_color's final
    `clip_by_value`); float32 in and out."""
    for name, factor in ops:
        image = _OPS[name](image, factor)
    return np.clip(image, 0, 255)


def distort_color(image: np.ndarray, rng: np.random.Generator, *, fast_mode: bool = True) -> np.ndarray:
    """TF-slim's random colour distortion of a float32 0-255 RGB image (see the module docstring)."""
    ordering = FAST_ORDERING if fast_mode else ORDERINGS[int(rng.integers(len(ORDERINGS)))]
    return apply_colour_ops(image, [(name, draw_factor(name, rng)) for name in ordering])

"""AutoAugment, RandAugment and RandomErasing on the host (NumPy + OpenCV), TF-Vision semantics.

The reference recipes were tuned with ``official.vision.ops.augment`` (TF Model Garden). Every op
here reproduces that module's arithmetic, checked op by op against golden outputs generated with
it (tools/make_augment_goldens.py, tests/data/test_augment.py). Behaviours of the reference that
are easy to get wrong, all reproduced on purpose:

* Rotate / ShearX / ShearY / TranslateX / TranslateY sample with nearest-neighbour
  interpolation and **reflect** the image at its borders (``transform``'s default
  ``fill_mode="reflect"``); the grey ``replace`` value (128) the policies pass is never used by
  them, because the wrap/unwrap alpha channel is reflected too. Only Cutout fills with 128.
* Solarize compares against the threshold cast to uint8, so the threshold wraps modulo 256:
  ``int(level / 10 * 256)`` is 256 (everything inverted) at level 10 and 128 at level 15.
* Posterize shifts by ``8 - bits`` cast to uint8 and clamped to 7 bits, so 0 bits (AutoAugment
  v0's ``('Posterize', 0.8, 2)``) keeps only the top bit.
* Contrast is ``tf.image.adjust_contrast``: the mean of each channel (not of a greyscale
  histogram, as in the older TF-TPU autoaugment), computed in float32 by pairwise folding.
* Blends (Color, Brightness, Sharpness) truncate towards zero, not round.
* Sharpness smooths with PIL's 3x3 kernel / 13, keeps the one-pixel border, and sums in float32
  row by row like TF's depthwise convolution, so ties fall the same way.
* ``magnitude_std > 0`` adds one N(0, 1) draw (not scaled by ``magnitude_std``) to the
  magnitude and clips it to [0, 10]; TF-Vision does exactly this (and only in eager mode, since
  ``int()`` of a traced level fails inside tf.data).

Random draws come from a ``numpy.random.Generator``: the distributions match TF-Vision, not its
exact random streams.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
from typing import Callable, Sequence

import cv2
import numpy as np

MAX_LEVEL = 10.0
# TF-Vision's `replace_value = [128] * 3`; only Cutout ends up using it (see module docstring).
REPLACE_VALUE = 128

_VALUES = np.arange(256, dtype=np.int64)
_F32 = np.float32


def _lut(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Apply a 256-entry table (shared, or one column per channel) with OpenCV."""
    table = np.ascontiguousarray(table, dtype=np.uint8)
    if table.ndim == 2:  # (256, 3): one table per channel
        table = table.reshape(1, 256, 3)
    return cv2.LUT(np.ascontiguousarray(image), table)


@functools.lru_cache(maxsize=64)
def _brightness_table(factor: float) -> np.ndarray:
    """TF-Vision `blend(zeros, image, factor)` as a 256-entry table (float32, truncating)."""
    if factor == 0.0:
        return np.zeros(256, np.uint8)
    if factor == 1.0:
        return _VALUES.astype(np.uint8)
    temp = _F32(factor) * _VALUES.astype(_F32)
    if not 0.0 < factor < 1.0:
        temp = np.clip(temp, 0.0, 255.0)
    return temp.astype(np.uint8)


def blend(image1: np.ndarray, image2: np.ndarray, factor: float) -> np.ndarray:
    """TF-Vision `blend`: image1 + factor * (image2 - image1) in float32, truncated to uint8.

    Factors outside (0, 1) extrapolate and are clipped to [0, 255] first.
    """
    if factor == 0.0:
        return image1
    if factor == 1.0:
        return image2
    return _blend_from_float(image1.astype(_F32), image2, factor)


def _blend_from_float(base: np.ndarray, image2: np.ndarray, factor: float) -> np.ndarray:
    """`blend` with image1 already float32 (`base`, integer values, same shape as image2)."""
    temp = image2.astype(_F32)
    temp -= base
    temp *= _F32(factor)
    temp += base
    if not 0.0 < factor < 1.0:
        _clip_0_255(temp)
    return temp.astype(np.uint8)


def _clip_0_255(values: np.ndarray) -> None:
    """Clip float32 values to [0, 255] in place. float32 bounds keep NumPy on its fast float32
    loop (Python-float bounds are about 3x slower, np.maximum / np.minimum slower still)."""
    np.clip(values, _F32(0.0), _F32(255.0), out=values)


def autocontrast(image: np.ndarray) -> np.ndarray:
    """Stretch each channel so its minimum maps to 0 and its maximum to 255 (float32, truncated)."""
    tables = np.empty((256, 3), np.uint8)
    for c in range(3):
        lo, hi = cv2.minMaxLoc(np.ascontiguousarray(image[..., c]))[:2]
        if hi > lo:
            scale = _F32(255.0) / (_F32(hi) - _F32(lo))
            offset = -_F32(lo) * scale
            scaled = _VALUES.astype(_F32) * scale + offset
            tables[:, c] = np.clip(scaled, 0.0, 255.0).astype(np.uint8)
        else:
            tables[:, c] = _VALUES
    return _lut(image, tables)


def equalize(image: np.ndarray) -> np.ndarray:
    """PIL-style histogram equalisation per channel (TF-Vision's integer LUT arithmetic)."""
    tables = np.empty((256, 3), np.uint8)
    for c in range(3):
        histo = cv2.calcHist([image], [c], None, [256], [0, 256]).ravel().astype(np.int64)
        nonzero = histo[histo != 0]
        step = (nonzero.sum() - nonzero[-1]) // 255
        if step == 0:
            tables[:, c] = _VALUES
            continue
        lut = (np.cumsum(histo) + step // 2) // step
        tables[:, c] = np.clip(np.concatenate([[0], lut[:-1]]), 0, 255)
    return _lut(image, tables)


def invert(image: np.ndarray) -> np.ndarray:
    """255 - image."""
    return cv2.bitwise_not(np.ascontiguousarray(image))


@functools.lru_cache(maxsize=64)
def _posterize_table(bits: int) -> np.ndarray:
    shift = min((8 - bits) % 256, 7)
    return ((_VALUES >> shift) << shift).astype(np.uint8)


@functools.lru_cache(maxsize=64)
def _solarize_add_table(addition: int, threshold: int) -> np.ndarray:
    added = np.clip(_VALUES + addition, 0, 255)
    return np.where(_VALUES < threshold % 256, added, _VALUES).astype(np.uint8)


@functools.lru_cache(maxsize=64)
def _solarize_table(threshold: int) -> np.ndarray:
    return np.where(_VALUES < threshold % 256, _VALUES, 255 - _VALUES).astype(np.uint8)


def posterize(image: np.ndarray, bits: int) -> np.ndarray:
    """Keep the top `bits` bits; the shift `8 - bits` wraps as uint8 and is clamped to 7 like TF."""
    return _lut(image, _posterize_table(int(bits)))


def solarize(image: np.ndarray, threshold: int) -> np.ndarray:
    """Invert pixels >= threshold; the threshold is cast to uint8 (wraps modulo 256) like TF."""
    return _lut(image, _solarize_table(int(threshold)))


def solarize_add(image: np.ndarray, addition: int, threshold: int = 128) -> np.ndarray:
    """Add `addition` (clipped to [0, 255]) to pixels below `threshold` (cast to uint8 like TF)."""
    return _lut(image, _solarize_add_table(int(addition), int(threshold)))


_GRAY_PRODUCTS = (
    (_VALUES.astype(_F32) * _F32(1.0 / 255.0))[:, None] * np.array([0.2989, 0.587, 0.114], _F32)
).reshape(1, 256, 3)


def _lut_float(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Per-channel float32 table lookup."""
    return cv2.LUT(np.ascontiguousarray(image), table)


def _grayscale_float(image: np.ndarray) -> np.ndarray:
    """`grayscale` as HxW float32 holding the truncated integer values."""
    # Each weighted term depends on one channel only: look the float32 products up, then sum in
    # TF's order (r + g) + b.
    red, green, blue = cv2.split(_lut_float(image, _GRAY_PRODUCTS))
    gray = cv2.add(cv2.add(red, green), blue)
    gray *= _F32(255.5)
    # The sum is >= 0, so floor is the truncation to uint8.
    return np.floor(gray, out=gray)


def grayscale(image: np.ndarray) -> np.ndarray:
    """`tf.image.rgb_to_grayscale` on uint8: float32 weights, then x * 255.5 truncated; HxWx1."""
    return _grayscale_float(image).astype(np.uint8)[..., None]


def color(image: np.ndarray, factor: float) -> np.ndarray:
    """PIL Color: blend the greyscale image towards (or past) the original."""
    if factor == 1.0:
        return image
    gray = _grayscale_float(image)
    # A contiguous 3-channel copy: NumPy's broadcasting loops are slower than the copy.
    base = cv2.merge((gray, gray, gray))
    if factor == 0.0:
        return base.astype(np.uint8)
    return _blend_from_float(base, image, factor)


def brightness(image: np.ndarray, factor: float) -> np.ndarray:
    """PIL Brightness: blend black towards (or past) the image; a table lookup."""
    return _lut(image, _brightness_table(float(factor)))


def _channel_means(image: np.ndarray) -> np.ndarray:
    """Per-channel mean of image / 255 exactly as TF's AdjustContrastv2 computes it in float32.

    The kernel folds the flattened pixel plane in half repeatedly (left half + right half, the
    odd middle element carried) until one pixel remains, then multiplies by 1 / pixel count.
    """
    flat = image.reshape(-1, image.shape[-1]).astype(_F32) * _F32(1.0 / 255.0)
    size = flat.shape[0]
    remaining = size
    first = True
    while remaining > 1:
        right = remaining // 2
        left = remaining - right
        if first:
            folded = flat[left : left + right] + flat[:right]
            if left > right:
                folded = np.concatenate([folded, flat[right : right + 1]])
            flat = folded
            first = False
        else:
            flat[:right] += flat[left : left + right]
            flat = flat[:left]
        remaining = left
    return flat[0] * _F32(1.0 / size)


def contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """`tf.image.adjust_contrast`: (x - channel mean) * factor + mean in [0, 1] floats, then
    x * 255.5 clipped and truncated to uint8; one table per channel."""
    means = _channel_means(image)
    values = _VALUES.astype(_F32) * _F32(1.0 / 255.0)
    tables = np.empty((256, 3), np.uint8)
    for c in range(3):
        adjusted = (values - means[c]) * _F32(factor) + means[c]
        tables[:, c] = np.clip(adjusted * _F32(255.5), 0.0, 255.0).astype(np.uint8)
    return _lut(image, tables)


_SMOOTH_KERNEL = (np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], _F32) / _F32(13.0)).astype(_F32)


# Sharpness works on strips of rows whose float32 buffers (about 96 KiB each) stay in a core's
# L2 cache; whole-image buffers at 224 px (600 KiB each) spill and run about twice as slowly.
_STRIP_FLOATS = 24576


def sharpness(image: np.ndarray, factor: float) -> np.ndarray:
    """PIL Sharpness: blend the 3x3-smoothed image (border pixels kept) with the original."""
    if factor == 1.0:
        return image
    image = np.ascontiguousarray(image)
    height, width, channels = image.shape
    out = image.copy()
    if height < 3 or width < 3:
        return out
    row = width * channels
    strip_rows = max(1, _STRIP_FLOATS // row)
    for top in range(0, height - 2, strip_rows):
        rows = min(strip_rows, height - 2 - top)
        out.reshape(height, row)[1 + top : 1 + top + rows, channels:-channels] = _sharpen_rows(
            image.reshape(-1)[top * row : (top + rows + 2) * row], row, channels, factor
        )
    return out


def _sharpen_rows(window: np.ndarray, row: int, channels: int, factor: float) -> np.ndarray:
    """Sharpness output for the interior of the middle rows of `window` (flat uint8 rows)."""
    rows = window.size // row - 2
    # TF's depthwise convolution adds the nine float32 products (kernel / 13) row-major and
    # truncates; doing the same float32 sums reproduces its rounding bit for bit. On the
    # flattened rows every window tap is one contiguous slice (offset dy * row + dx * channels),
    # so each step is a single fast 1-D pass; the outputs that wrap around a row end are
    # computed too and dropped at the end.
    count = rows * row - 2 * channels
    flat = window.astype(_F32)
    edge = flat * _SMOOTH_KERNEL[0, 0]
    smooth = edge[:count].copy()
    for dy in range(3):
        for dx in range(3):
            offset = dy * row + dx * channels
            if offset == 0:
                continue
            if dy == 1 and dx == 1:
                tap = flat[offset : offset + count] * _SMOOTH_KERNEL[1, 1]
            else:
                tap = edge[offset : offset + count]
            np.add(smooth, tap, out=smooth)
    # The sums are >= 0, so floor is the truncation to uint8; keeping it as float32 lets the
    # blend below start from it without a uint8 round trip (its values are exact integers).
    np.floor(smooth, out=smooth)
    # blend(smooth, image, factor) in TF's float32 order, in place on the centre taps.
    blended = flat[row + channels : row + channels + count]
    blended -= smooth
    blended *= _F32(factor)
    blended += smooth
    if not 0.0 < factor < 1.0:
        _clip_0_255(blended)
    interior = np.empty(rows * row, np.uint8)
    interior[:count] = blended  # float32 -> uint8 truncates, like astype
    return interior.reshape(rows, row)[:, : row - 2 * channels]


def _reflect_round(coord: np.ndarray, size: int) -> np.ndarray:
    """TF's FILL_REFLECT coordinate map (d c b a | a b c d | d c b a) on float32 coordinates,
    clamped, then std::round (half away from zero); int32 indices."""
    if size <= 1:
        return np.zeros(coord.shape, np.int32)
    coord = coord.copy()
    period = _F32(2 * size)
    low = coord < 0
    if low.any():
        c = coord[low]
        c = period * (-c / period).astype(np.int64).astype(_F32) + c
        coord[low] = np.where(c < -size, c + period, -c - _F32(1.0))
    high = coord > size - 1
    if high.any():
        c = coord[high]
        c -= period * (c / period).astype(np.int64).astype(_F32)
        coord[high] = np.where(c >= size, period - c - _F32(1.0), c)
    np.clip(coord, 0, size - 1, out=coord)
    index = np.floor(coord)
    index += (coord - index) >= 0.5
    return index.astype(np.int32)


def _warp(image: np.ndarray, matrix: Sequence[float]) -> np.ndarray:
    """TF `transform` with its defaults: `matrix` [a0, a1, a2, b0, b1, b2] maps output (x, y) to
    input (a0 x + a1 y + a2, b0 x + b1 y + b2) in float32, reflect at the borders, nearest
    neighbour (std::round). Coordinates are computed like TF's kernel, so ties round the same;
    OpenCV's fixed-point warpAffine rounds exact halves differently (shears hit many)."""
    height, width = image.shape[:2]
    coords = _warp_map(height, width, tuple(float(_F32(v)) for v in matrix))
    # Integer maps: OpenCV only gathers, all rounding was done in `_warp_map`.
    return cv2.remap(np.ascontiguousarray(image), coords, None, cv2.INTER_NEAREST)


@functools.lru_cache(maxsize=32)
def _warp_map(height: int, width: int, matrix: tuple[float, ...]) -> np.ndarray:
    """The (height, width, 2) int16 source (x, y) of every output pixel for `_warp`.

    Cached: at a fixed magnitude RandAugment and AutoAugment use a handful of matrices per image
    size (e.g. rotate by +-45 degrees), and building a map costs more than the gather itself.
    """
    a0, a1, a2, b0, b1, b2 = (_F32(v) for v in matrix)
    xs = np.arange(width, dtype=_F32)[None, :]
    ys = np.arange(height, dtype=_F32)[:, None]
    # A zero coefficient adds an exact zero, so skipping it keeps the arrays one-dimensional.
    in_x = a0 * xs if a1 == 0 else a0 * xs + a1 * ys
    in_y = b1 * ys if b0 == 0 else b0 * xs + b1 * ys
    coords = np.empty((height, width, 2), np.int16)
    coords[..., 0] = _reflect_round(in_x + a2, width)
    coords[..., 1] = _reflect_round(in_y + b2, height)
    coords.flags.writeable = False
    return coords


def rotate_matrix(degrees: float, height: int, width: int) -> list:
    """The `_warp` matrix of a rotation about the image centre (TF-Vision `wrapped_rotate`)."""
    radians = _F32(degrees * (math.pi / 180.0))
    cos, sin = np.cos(radians), np.sin(radians)
    height, width = _F32(height), _F32(width)
    x_offset = ((width - 1) - (cos * (width - 1) - sin * (height - 1))) / _F32(2.0)
    y_offset = ((height - 1) - (sin * (width - 1) + cos * (height - 1))) / _F32(2.0)
    return [cos, -sin, x_offset, sin, cos, y_offset]


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate about the image centre by `degrees` (TF-Vision `wrapped_rotate`)."""
    return _warp(image, rotate_matrix(degrees, *image.shape[:2]))


def shear_x_matrix(level: float, height: int, width: int) -> list:
    """Shear along x: output (x, y) samples input (x + level * y, y)."""
    return [1.0, _F32(level), 0.0, 0.0, 1.0, 0.0]


def shear_y_matrix(level: float, height: int, width: int) -> list:
    """Shear along y: output (x, y) samples input (x, level * x + y)."""
    return [1.0, 0.0, 0.0, _F32(level), 1.0, 0.0]


def translate_x_matrix(pixels: float, height: int, width: int) -> list:
    """Shift the content left by `pixels` (output x samples input x + pixels)."""
    return [1.0, 0.0, _F32(pixels), 0.0, 1.0, 0.0]


def translate_y_matrix(pixels: float, height: int, width: int) -> list:
    """Shift the content up by `pixels` (output y samples input y + pixels)."""
    return [1.0, 0.0, 0.0, 0.0, 1.0, _F32(pixels)]


def shear_x(image: np.ndarray, level: float) -> np.ndarray:
    """Shear along x: output (x, y) samples input (x + level * y, y)."""
    return _warp(image, shear_x_matrix(level, *image.shape[:2]))


def shear_y(image: np.ndarray, level: float) -> np.ndarray:
    """Shear along y: output (x, y) samples input (x, level * x + y)."""
    return _warp(image, shear_y_matrix(level, *image.shape[:2]))


def translate_x(image: np.ndarray, pixels: float) -> np.ndarray:
    """Shift the content left by `pixels` (output x samples input x + pixels)."""
    return _warp(image, translate_x_matrix(pixels, *image.shape[:2]))


def translate_y(image: np.ndarray, pixels: float) -> np.ndarray:
    """Shift the content up by `pixels` (output y samples input y + pixels)."""
    return _warp(image, translate_y_matrix(pixels, *image.shape[:2]))


def cutout_at(
    image: np.ndarray, center_y: int, center_x: int, pad_size: int, replace: int = REPLACE_VALUE
) -> np.ndarray:
    """Fill rows [cy - pad, cy + pad) x columns [cx - pad, cx + pad), clipped, with `replace`."""
    height, width = image.shape[:2]
    out = image.copy()
    out[
        max(0, center_y - pad_size) : min(height, center_y + pad_size),
        max(0, center_x - pad_size) : min(width, center_x + pad_size),
    ] = replace
    return out


def cutout(
    image: np.ndarray, pad_size: int, rng: np.random.Generator, replace: int = REPLACE_VALUE
) -> np.ndarray:
    """Cutout with a centre drawn uniformly over the whole image (`cutout_at`)."""
    center_y = int(rng.integers(image.shape[0]))
    center_x = int(rng.integers(image.shape[1]))
    return cutout_at(image, center_y, center_x, pad_size, replace)


# --- the ops: function, magnitude rule, sign and RandAugment membership, in one table ----------


def _mult(level: float, multiplier: float) -> int:
    return int((level / MAX_LEVEL) * multiplier)


def _no_args(level, *, cutout_const, translate_const):
    return ()


def _rotate_args(level, *, cutout_const, translate_const):
    return ((level / MAX_LEVEL) * 30.0,)


def _posterize_args(level, *, cutout_const, translate_const):
    return (_mult(level, 4),)


def _solarize_args(level, *, cutout_const, translate_const):
    return (_mult(level, 256),)


def _solarize_add_args(level, *, cutout_const, translate_const):
    return (_mult(level, 110),)


def _enhance_args(level, *, cutout_const, translate_const):
    return ((level / MAX_LEVEL) * 1.8 + 0.1,)


def _shear_args(level, *, cutout_const, translate_const):
    return ((level / MAX_LEVEL) * 0.3,)


def _translate_args(level, *, cutout_const, translate_const):
    return ((level / MAX_LEVEL) * float(translate_const),)


def _cutout_args(level, *, cutout_const, translate_const):
    return (_mult(level, cutout_const),)


@dataclasses.dataclass(frozen=True)
class Op:
    """One augmentation op. A new op is one `OPS` entry (and its golden in tools/)."""

    #: `function(image, *args)`, or `function(image, *args, rng)` with `uses_rng`.
    function: Callable[..., np.ndarray]
    #: TF-Vision's `level_to_arg` for the op: magnitude -> `args`.
    level_args: Callable[..., tuple]
    #: TF-Vision negates the (first) argument with probability 1/2.
    signed: bool = False
    #: The op draws from the rng itself (Cutout's centre).
    uses_rng: bool = False
    #: Drawn by RandAugment (AutoAugment uses any op its policy names).
    randaugment: bool = True
    #: A geometric op: `matrix(arg, height, width)` is its `_warp` matrix, which is what the
    #: device form (`flaxnets.data.augment_device`) receives.
    matrix: Callable[..., list] | None = None


#: Every op by TF-Vision's name, in the order of TF-Vision RandAugment's op list.
OPS: dict[str, Op] = {
    "AutoContrast": Op(autocontrast, _no_args),
    "Equalize": Op(equalize, _no_args),
    "Invert": Op(invert, _no_args),
    "Rotate": Op(rotate, _rotate_args, signed=True, matrix=rotate_matrix),
    "Posterize": Op(posterize, _posterize_args),
    "Solarize": Op(solarize, _solarize_args),
    "Color": Op(color, _enhance_args),
    "Contrast": Op(contrast, _enhance_args),
    "Brightness": Op(brightness, _enhance_args),
    "Sharpness": Op(sharpness, _enhance_args),
    "ShearX": Op(shear_x, _shear_args, signed=True, matrix=shear_x_matrix),
    "ShearY": Op(shear_y, _shear_args, signed=True, matrix=shear_y_matrix),
    "TranslateX": Op(translate_x, _translate_args, signed=True, matrix=translate_x_matrix),
    "TranslateY": Op(translate_y, _translate_args, signed=True, matrix=translate_y_matrix),
    "Cutout": Op(cutout, _cutout_args, uses_rng=True),
    "SolarizeAdd": Op(solarize_add, _solarize_add_args),
}

NAME_TO_FUNC: dict[str, Callable[..., np.ndarray]] = {name: op.function for name, op in OPS.items()}

# TF-Vision RandAugment's op list, in its order.
RANDAUGMENT_OPS = tuple(name for name, op in OPS.items() if op.randaugment)


def level_to_arg(
    name: str, level: float, *, cutout_const: float, translate_const: float, negate: bool = False
) -> tuple:
    """The arguments TF-Vision passes to op `name` at magnitude `level`.

    `negate` is the random sign TF-Vision draws (50/50) for the signed ops (Rotate, ShearX/Y,
    TranslateX/Y); other ops ignore it.
    """
    if name not in OPS:
        raise ValueError(f"augmentation op {name!r}: expected one of {sorted(OPS)}")
    op = OPS[name]
    args = op.level_args(level, cutout_const=cutout_const, translate_const=translate_const)
    if op.signed and negate:
        args = (-args[0],) + args[1:]
    return args


def apply_op(name: str, image: np.ndarray, args: tuple, rng: np.random.Generator) -> np.ndarray:
    """Apply op `name` with `args` (from `level_to_arg`); Cutout also draws its centre from rng."""
    op = OPS[name]
    return op.function(image, *args, rng) if op.uses_rng else op.function(image, *args)


def _sample_args(
    name: str, level: float, cutout_const: float, translate_const: float, rng: np.random.Generator
) -> tuple:
    negate = OPS[name].signed and rng.random() < 0.5
    return level_to_arg(
        name, level, cutout_const=cutout_const, translate_const=translate_const, negate=negate
    )


# --- policies --------------------------------------------------------------------------------

POLICIES: dict[str, list[list[tuple[str, float, int]]]] = {
    # AutoAugment paper's ImageNet policy as TF-Vision's `policy_v0`.
    "v0": [
        [("Equalize", 0.8, 1), ("ShearY", 0.8, 4)],
        [("Color", 0.4, 9), ("Equalize", 0.6, 3)],
        [("Color", 0.4, 1), ("Rotate", 0.6, 8)],
        [("Solarize", 0.8, 3), ("Equalize", 0.4, 7)],
        [("Solarize", 0.4, 2), ("Solarize", 0.6, 2)],
        [("Color", 0.2, 0), ("Equalize", 0.8, 8)],
        [("Equalize", 0.4, 8), ("SolarizeAdd", 0.8, 3)],
        [("ShearX", 0.2, 9), ("Rotate", 0.6, 8)],
        [("Color", 0.6, 1), ("Equalize", 1.0, 2)],
        [("Invert", 0.4, 9), ("Rotate", 0.6, 0)],
        [("Equalize", 1.0, 9), ("ShearY", 0.6, 3)],
        [("Color", 0.4, 7), ("Equalize", 0.6, 0)],
        [("Posterize", 0.4, 6), ("AutoContrast", 0.4, 7)],
        [("Solarize", 0.6, 8), ("Color", 0.6, 9)],
        [("Solarize", 0.2, 4), ("Rotate", 0.8, 9)],
        [("Rotate", 1.0, 7), ("TranslateY", 0.8, 9)],
        [("ShearX", 0.0, 0), ("Solarize", 0.8, 4)],
        [("ShearY", 0.8, 0), ("Color", 0.6, 4)],
        [("Color", 1.0, 0), ("Rotate", 0.6, 2)],
        [("Equalize", 0.8, 4), ("Equalize", 0.0, 8)],
        [("Equalize", 1.0, 4), ("AutoContrast", 0.6, 2)],
        [("ShearY", 0.4, 7), ("SolarizeAdd", 0.6, 7)],
        [("Posterize", 0.8, 2), ("Solarize", 0.6, 10)],
        [("Solarize", 0.6, 8), ("Equalize", 0.6, 1)],
        [("Color", 0.8, 6), ("Rotate", 0.4, 5)],
    ],
    # TF-Vision's `policy_simple`: v0 without the geometric ops.
    "simple": [
        [("Color", 0.4, 9), ("Equalize", 0.6, 3)],
        [("Solarize", 0.8, 3), ("Equalize", 0.4, 7)],
        [("Solarize", 0.4, 2), ("Solarize", 0.6, 2)],
        [("Color", 0.2, 0), ("Equalize", 0.8, 8)],
        [("Equalize", 0.4, 8), ("SolarizeAdd", 0.8, 3)],
        [("Color", 0.6, 1), ("Equalize", 1.0, 2)],
        [("Color", 0.4, 7), ("Equalize", 0.6, 0)],
        [("Posterize", 0.4, 6), ("AutoContrast", 0.4, 7)],
        [("Solarize", 0.6, 8), ("Color", 0.6, 9)],
        [("Equalize", 0.8, 4), ("Equalize", 0.0, 8)],
        [("Equalize", 1.0, 4), ("AutoContrast", 0.6, 2)],
        [("Posterize", 0.8, 2), ("Solarize", 0.6, 10)],
        [("Solarize", 0.6, 8), ("Equalize", 0.6, 1)],
    ],
}

class _Policy:
    """An augmentation policy: `choose(rng)` draws the (op, args) to apply, in order; at most
    `max_ops` of them."""

    max_ops: int

    def choose(self, rng: np.random.Generator) -> list[tuple[str, tuple]]:
        raise NotImplementedError

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for name, args in self.choose(rng):
            image = apply_op(name, image, args, rng)
        return image


class AutoAugment(_Policy):
    """TF-Vision AutoAugment: one sub-policy drawn uniformly, each of its ops applied with its
    probability. Callable as `augment(image_uint8_hwc, rng) -> image_uint8_hwc`."""

    def __init__(self, policy: str = "v0", cutout_const: float = 100, translate_const: float = 250):
        if policy not in POLICIES:
            raise ValueError(f"AutoAugment policy {policy!r}: expected one of {sorted(POLICIES)}")
        self.policy = policy
        self.policies = POLICIES[policy]
        self.max_ops = max(len(sub) for sub in self.policies)
        self.cutout_const = float(cutout_const)
        self.translate_const = float(translate_const)

    def choose(self, rng: np.random.Generator) -> list[tuple[str, tuple]]:
        """Draw the ops (name, args) this call applies, in order."""
        chosen = []
        for name, prob, level in self.policies[int(rng.integers(len(self.policies)))]:
            if rng.random() < prob:
                chosen.append(
                    (name, _sample_args(name, level, self.cutout_const, self.translate_const, rng))
                )
        return chosen


class RandAugment(_Policy):
    """TF-Vision RandAugment. Callable as `augment(image_uint8_hwc, rng) -> image_uint8_hwc`.

    Each of `num_layers` layers draws one of the ops or identity (len(ops) + 1 equally likely
    choices); with `prob_to_apply` set, a layer's result is kept with that probability.
    """

    def __init__(
        self,
        num_layers: int = 2,
        magnitude: float = 10.0,
        magnitude_std: float = 0.0,
        prob_to_apply: float | None = None,
        exclude_ops: Sequence[str] | None = None,
        cutout_const: float = 40,
        translate_const: float = 100,
    ):
        unknown = sorted(set(exclude_ops or ()) - set(RANDAUGMENT_OPS))
        if unknown:
            raise ValueError(f"exclude_ops {unknown}: expected names from {list(RANDAUGMENT_OPS)}")
        self.num_layers = int(num_layers)
        self.max_ops = self.num_layers
        self.magnitude = float(magnitude)
        self.magnitude_std = float(magnitude_std)
        self.prob_to_apply = None if prob_to_apply is None else float(prob_to_apply)
        self.ops = [op for op in RANDAUGMENT_OPS if op not in set(exclude_ops or ())]
        self.cutout_const = float(cutout_const)
        self.translate_const = float(translate_const)

    def choose(self, rng: np.random.Generator) -> list[tuple[str, tuple]]:
        """Draw the ops (name, args) this call applies, in order (identity layers left out)."""
        chosen = []
        for _ in range(self.num_layers):
            index = int(rng.integers(len(self.ops) + 1))
            name = self.ops[index] if index < len(self.ops) else None
            level = self.magnitude
            if name is not None and self.magnitude_std > 0:
                level = float(np.clip(level + rng.standard_normal(), 0.0, MAX_LEVEL))
            args = (
                None
                if name is None
                else _sample_args(name, level, self.cutout_const, self.translate_const, rng)
            )
            if self.prob_to_apply is not None and not rng.random() < self.prob_to_apply:
                continue
            if name is not None:
                chosen.append((name, args))
        return chosen


# RandomErasing's noise: pixel k of a rectangle (its flat index y * W * C + x * C + c in the
# image) takes quantile `h >> 16` of 65536 of N(0, 1), h = `noise_hash(seed, k)`, `seed` one
# draw per rectangle. Host and device compute the same integers, so the two paths write the same
# noise from one 32-bit draw instead of a draw per pixel (which the device could not carry).
NOISE_LEVELS = 1 << 16


def _lowbias32(x):
    """Chris Wellons' lowbias32 integer hash on uint32 values (NumPy or jax.numpy arrays)."""
    x = x ^ (x >> 16)
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> 16)


def noise_hash(seed, index):
    """The noise hash of flat pixel `index` under `seed` (uint32 arrays, NumPy or jax.numpy)."""
    return _lowbias32(_lowbias32(seed) + index)


@functools.lru_cache(maxsize=1)
def normal_quantiles() -> np.ndarray:
    """The (i + 1/2) / 65536 quantiles of N(0, 1), float32: the noise values by level."""
    inv_cdf = statistics.NormalDist().inv_cdf
    return np.array([inv_cdf((i + 0.5) / NOISE_LEVELS) for i in range(NOISE_LEVELS)], _F32)


@functools.lru_cache(maxsize=8)
def _noise_table_cached(mean: tuple, std: tuple) -> np.ndarray:
    noise = normal_quantiles()[None, :]
    mean = np.asarray(mean, _F32)[:, None]
    std = np.asarray(std, _F32)[:, None]
    table = np.clip(np.rint(mean + std * noise), 0, 255).astype(np.uint8)
    table.flags.writeable = False
    return table


def erasing_noise_table(mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(channels, 65536) uint8: round(mean + std * quantile), clipped, per channel (0-255 scale)."""
    return _noise_table_cached(tuple(float(m) for m in mean), tuple(float(s) for s in std))


class RandomErasing:
    """TF-Vision RandomErasing (after normalisation in its pipeline): with `probability`, erase
    `count` rectangles of random area and log-uniform aspect with N(0, 1) noise.

    On a float image (already normalised) the noise is written as is, like TF-Vision. On a uint8
    image give `mean` and `std` (0-255 scale, per channel): the noise is written as
    round(mean + std * N(0, 1)), clipped, which normalises to the same N(0, 1) up to rounding.
    TF-Vision's quirks are kept: the count is drawn from [min_count, max_count - min_count] and
    the rectangle centre from [0, size - 2 * half), so rectangles never reach the bottom/right.
    The noise is N(0, 1) quantised to 65536 levels, picked by a hash of the pixel's position and
    one seed drawn per rectangle (`noise_hash`), so the device form can write the same noise.
    """

    def __init__(
        self,
        probability: float = 0.25,
        min_area: float = 0.02,
        max_area: float = 1 / 3,
        min_aspect: float = 0.3,
        max_aspect: float | None = None,
        min_count: int = 1,
        max_count: int = 1,
        trials: int = 10,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ):
        if (mean is None) != (std is None):
            raise ValueError("RandomErasing: give both mean and std (0-255 scale) or neither")
        self.probability = float(probability)
        self.min_area = float(min_area)
        self.max_area = float(max_area)
        self.min_log_aspect = math.log(min_aspect)
        self.max_log_aspect = math.log(max_aspect or 1 / min_aspect)
        self.min_count = int(min_count)
        self.max_count = int(max_count)
        self.trials = int(trials)
        self.mean = None if mean is None else tuple(float(m) for m in mean)
        self.std = None if std is None else tuple(float(s) for s in std)

    def draw(self, height: int, width: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
        """The rectangles one call erases, as (y0, y1, x0, x1, noise seed), in order."""
        if not rng.random() < self.probability:
            return []
        if self.min_count == self.max_count:
            count = self.min_count
        else:
            count = int(rng.integers(self.min_count, self.max_count - self.min_count + 1))
        area = float(height * width)
        boxes = []
        for _ in range(count):
            for _ in range(self.trials):
                erase_area = rng.uniform(area * self.min_area, area * self.max_area)
                aspect = math.exp(rng.uniform(self.min_log_aspect, self.max_log_aspect))
                # tf.math.round rounds half to even, like np.round.
                half_h = int(np.round(math.sqrt(erase_area * aspect) / 2))
                half_w = int(np.round(math.sqrt(erase_area / aspect) / 2))
                if 2 * half_h < height and 2 * half_w < width:
                    cy = int(rng.integers(height - 2 * half_h))
                    cx = int(rng.integers(width - 2 * half_w))
                    boxes.append((max(0, cy - half_h), min(height, cy + half_h),
                                  max(0, cx - half_w), min(width, cx + half_w),
                                  int(rng.integers(1 << 32))))
                    break
        return boxes

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if image.dtype == np.uint8 and self.mean is None:
            raise ValueError("RandomErasing on uint8 images needs mean and std (0-255 scale)")
        boxes = self.draw(image.shape[0], image.shape[1], rng)
        if not boxes:
            return image
        image = image.copy()
        width, channels = image.shape[1], image.shape[2]
        for y0, y1, x0, x1, seed in boxes:
            index = ((np.arange(y0, y1, dtype=np.uint32)[:, None, None] * width
                      + np.arange(x0, x1, dtype=np.uint32)[None, :, None]) * channels
                     + np.arange(channels, dtype=np.uint32))
            level = noise_hash(np.array([seed], np.uint32), index) >> 16
            if image.dtype == np.uint8:
                table = erasing_noise_table(self.mean, self.std)
                image[y0:y1, x0:x1] = table[np.arange(channels), level]
            else:
                image[y0:y1, x0:x1] = normal_quantiles()[level].astype(image.dtype)
        return image


#: Op codes of the device form: the position in `OPS`; -1 is no op.
OP_CODES: dict[str, int] = {name: code for code, name in enumerate(OPS)}
#: Argument slots per op in the device form (a geometric op's 6-entry `_warp` matrix is the most).
ARG_SLOTS = 6


def device_args(name: str, args: tuple, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """The float32 [ARG_SLOTS] the device form of op `name` takes for `args`: a geometric op's
    warp matrix, Cutout's (centre y, centre x, pad) with the centre drawn from `rng` as `cutout`
    draws it, SolarizeAdd's (addition, threshold), else the op's one argument (or nothing)."""
    op = OPS[name]
    out = np.zeros(ARG_SLOTS, _F32)
    if op.matrix is not None:
        out[:] = op.matrix(args[0], height, width)
    elif name == "Cutout":
        out[:3] = (int(rng.integers(height)), int(rng.integers(width)), args[0])
    elif name == "SolarizeAdd":
        out[:2] = (args[0], 128)
    elif args:
        out[0] = args[0]
    return out


class DeviceDraws:
    """The random draws of a policy (AutoAugment / RandAugment) and RandomErasing for one
    example, for `flaxnets.data.augment_device` to apply on the accelerator.

    `draws(height, width, rng)` consumes `rng` exactly as `Chain([policy, erasing])` would on
    an image of that size and returns small arrays: "augment_ops" int32 [max_ops] (op codes,
    -1: none), "augment_args" float32 [max_ops, ARG_SLOTS] (`device_args`), "erase_boxes" int32
    [max_count, 5] (y0, y1, x0, x1, noise seed as int32 bits; an empty box where none).
    """

    def __init__(self, policy: _Policy | None, erasing: RandomErasing | None):
        self.policy = policy
        self.erasing = erasing
        self.max_ops = policy.max_ops if policy is not None else 0
        self.max_boxes = erasing.max_count if erasing is not None else 0

    def __call__(self, height: int, width: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        ops = np.full(self.max_ops, -1, np.int32)
        args = np.zeros((self.max_ops, ARG_SLOTS), _F32)
        if self.policy is not None:
            # Cutout draws its centre when applied, i.e. after every choice: the same order here.
            for i, (name, op_args) in enumerate(self.policy.choose(rng)):
                ops[i] = OP_CODES[name]
                args[i] = device_args(name, op_args, height, width, rng)
        boxes = np.zeros((self.max_boxes, 5), np.int64)
        if self.erasing is not None:
            for i, box in enumerate(self.erasing.draw(height, width, rng)):
                boxes[i] = box
        return {"augment_ops": ops, "augment_args": args,
                "erase_boxes": boxes.astype(np.uint32).view(np.int32)}

    def draw_batch(self, count: int, height: int, width: int, seed: int) -> dict[str, np.ndarray]:
        """The draws of `count` examples stacked, example i from generator (seed, i): fake
        batches for benchmarks."""
        draws = [self(height, width, np.random.default_rng([seed, i])) for i in range(count)]
        return {key: np.stack([d[key] for d in draws]) for key in draws[0]}


class Chain:
    """Apply host-side augmentations in order (picklable for loader worker processes)."""

    def __init__(self, ops):
        self.ops = list(ops)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for op in self.ops:
            image = op(image, rng)
        return image


def augment_from_config(data, *, mean=None, std=None):
    """The augmentation a `flaxnets.config.DataConfig` asks for, applied after crop and flip:
    AutoAugment or RandAugment, then RandomErasing (its noise on the 0-255 scale from `mean` /
    `std`); None when it asks for none. With `data.augment_on == "device"` a `DeviceDraws` of
    the same policy, whose draws the loader puts in the batch for the train step to apply. The
    one place training, `flaxnets benchmark data` and benchmarks/ build it."""
    policy = erasing = None
    if data.augment == "autoaugment":
        policy = AutoAugment(data.autoaugment_policy, cutout_const=data.cutout_const,
                             translate_const=data.translate_const)
    elif data.augment == "randaugment":
        policy = RandAugment(
            num_layers=data.randaugment_num_layers, magnitude=data.randaugment_magnitude,
            magnitude_std=data.randaugment_magnitude_std, prob_to_apply=data.randaugment_prob_to_apply,
            exclude_ops=list(data.randaugment_exclude_ops) or None, cutout_const=data.cutout_const,
            translate_const=data.translate_const)
    if data.random_erasing > 0:
        erasing = RandomErasing(probability=data.random_erasing, mean=mean, std=std)
    if policy is None and erasing is None:
        return None
    if data.augment_on == "device":
        return DeviceDraws(policy, erasing)
    ops = [op for op in (policy, erasing) if op is not None]
    return ops[0] if len(ops) == 1 else Chain(ops)

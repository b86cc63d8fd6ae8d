"""AutoAugment, RandAugment and RandomErasing on the accelerator (jax.numpy), inside the train step.

The host draws every random choice (`flaxnets.data.augment.DeviceDraws`: op codes, arguments,
erasing rectangles and noise seeds, consuming the example's generator exactly as the host
augmentation does); this module applies them to a uint8 batch with the same arithmetic as the
host ops in `flaxnets.data.augment`, which reproduce TF-Vision's `official.vision.ops.augment`.
tests/data/test_augment_device.py holds the two equal on photos.

One layer applies one op per example. Under `vmap` every example takes its own op, so each layer
computes the four forms an op can have and keeps the example's own:

* a 256-entry table per channel (AutoContrast, Equalize, Invert, Posterize, Solarize,
  SolarizeAdd, Brightness, Contrast), one gather;
* a nearest-neighbour warp with reflected borders (Rotate, ShearX/Y, TranslateX/Y) from the
  6-entry matrix the host computed, one gather;
* a blend of a base image with the image (Color: greyscale; Sharpness: the 3x3 smoothing);
* Cutout's grey square.

XLA contracts a float32 multiply feeding an add into one fused multiply-add, which rounds once
where TF and NumPy round twice; `_rounded` keeps such products rounded on their own, so the
results stay bit-exact.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from flaxnets.data import augment as host

_F32 = jnp.float32

#: Which form each op takes, by op code (`host.OP_CODES`).
_LUT, _WARP, _BLEND, _CUTOUT = 0, 1, 2, 3
_FORMS = {
    "AutoContrast": _LUT, "Equalize": _LUT, "Invert": _LUT, "Posterize": _LUT, "Solarize": _LUT,
    "SolarizeAdd": _LUT, "Brightness": _LUT, "Contrast": _LUT,
    "Rotate": _WARP, "ShearX": _WARP, "ShearY": _WARP, "TranslateX": _WARP, "TranslateY": _WARP,
    "Color": _BLEND, "Sharpness": _BLEND,
    "Cutout": _CUTOUT,
}
# The table ops in the order `_tables` stacks them (identity first).
_TABLE_OPS = ("AutoContrast", "Equalize", "Invert", "Posterize", "Solarize", "SolarizeAdd",
              "Brightness", "Contrast")


def _code_lookup(values: dict, default: int) -> np.ndarray:
    """An int32 array indexed by op code + 1 (code -1, no op, at index 0)."""
    out = np.full(len(host.OP_CODES) + 1, default, np.int32)
    for name, value in values.items():
        out[host.OP_CODES[name] + 1] = value
    return out


_FORM_OF_CODE = _code_lookup(_FORMS, -1)
_TABLE_OF_CODE = _code_lookup({name: i + 1 for i, name in enumerate(_TABLE_OPS)}, 0)
_SHARPNESS = host.OP_CODES["Sharpness"]
_GRAY_PRODUCTS = np.asarray(host._GRAY_PRODUCTS).reshape(256, 3)
_SMOOTH = host._SMOOTH_KERNEL


# A float32 bit pattern (about 1.7e38) no value computed here reaches. It must be a finite
# number: the compiler proves that a product of finite values is not NaN and would drop a
# comparison with a NaN pattern, and the fusion with it.
_NEVER = 0x7F000000


def _rounded(x):
    """`x` as computed, rounded to float32: the bit pattern passes through an integer select the
    compiler cannot remove, so a multiply here is not fused with the add that consumes it."""
    bits = lax.bitcast_convert_type(x, jnp.uint32)
    bits = jnp.where(bits == jnp.uint32(_NEVER), jnp.uint32(0), bits)
    return lax.bitcast_convert_type(bits, _F32)


def _to_uint8(x):
    """Clip to [0, 255] and truncate, as TF-Vision's casts (and NumPy's astype) after a clip."""
    return jnp.clip(x, 0.0, 255.0).astype(jnp.uint8)


# --- tables ----------------------------------------------------------------------------------


def _histograms(image):
    """(3, 256) int32 per-channel histograms."""
    channels = jnp.broadcast_to(jnp.arange(3), image.shape)
    return jnp.zeros((3, 256), jnp.int32).at[channels, image.astype(jnp.int32)].add(1)


def _channel_means(image):
    """`host._channel_means`: TF's AdjustContrastv2 folding, in the same float32 order."""
    flat = _rounded(image.reshape(-1, 3).astype(_F32) * _F32(1.0 / 255.0))
    size = flat.shape[0]
    remaining = size
    while remaining > 1:
        right = remaining // 2
        left = remaining - right
        head = flat[left:left + right] + flat[:right]
        flat = jnp.concatenate([head, flat[right:left]]) if left > right else head
        remaining = left
    return _rounded(flat[0] * _F32(1.0 / size))


def _autocontrast_table(values, histo):
    present = histo > 0
    lo = jnp.argmax(present, axis=1)
    hi = 255 - jnp.argmax(present[:, ::-1], axis=1)
    lo_f, hi_f = lo.astype(_F32), hi.astype(_F32)
    scale = _F32(255.0) / (hi_f - lo_f)
    offset = _rounded(-lo_f * scale)
    scaled = _to_uint8(_rounded(values[None, :] * scale[:, None]) + offset[:, None])
    return jnp.where((hi > lo)[:, None], scaled, values.astype(jnp.uint8)[None, :])


def _equalize_table(values, histo):
    last = 255 - jnp.argmax(histo[:, ::-1] > 0, axis=1)
    last_count = jnp.take_along_axis(histo, last[:, None], axis=1)[:, 0]
    step = (histo.sum(axis=1) - last_count) // 255
    safe = jnp.maximum(step, 1)[:, None]
    lut = (jnp.cumsum(histo, axis=1) + safe // 2) // safe
    table = jnp.clip(jnp.concatenate([jnp.zeros((3, 1), lut.dtype), lut[:, :-1]], axis=1), 0, 255)
    return jnp.where((step == 0)[:, None], values[None, :], table).astype(jnp.uint8)


def _tables(image, args):
    """(9, 3, 256) uint8: identity, then every `_TABLE_OPS` table at `args` for this image."""
    values = jnp.arange(256, dtype=jnp.int32)
    values_f = values.astype(_F32)
    histo = _histograms(image)
    arg = args[0]
    bits = arg.astype(jnp.int32)
    shift = jnp.minimum(jnp.mod(8 - bits, 256), 7)
    threshold = jnp.mod(arg.astype(jnp.int32), 256)
    add_threshold = jnp.mod(args[1].astype(jnp.int32), 256)
    added = jnp.clip(values + arg.astype(jnp.int32), 0, 255)
    scaled = _rounded(values_f * _F32(1.0 / 255.0))
    means = _channel_means(image)
    contrast = _rounded((scaled[None, :] - means[:, None]) * arg) + means[:, None]
    per_value = [
        values,
        255 - values,
        (values >> shift) << shift,
        jnp.where(values < threshold, values, 255 - values),
        jnp.where(values < add_threshold, added, values),
    ]
    shared = [jnp.broadcast_to(t.astype(jnp.uint8), (3, 256)) for t in per_value]
    brightness = jnp.broadcast_to(_to_uint8(arg * values_f), (3, 256))
    stack = [shared[0], _autocontrast_table(values_f, histo), _equalize_table(values, histo),
             shared[1], shared[2], shared[3], shared[4], brightness,
             _to_uint8(contrast * _F32(255.5))]
    return jnp.stack(stack)


def _apply_table(image, table):
    """out[y, x, c] = table[c, image[y, x, c]]."""
    return table.reshape(-1)[image.astype(jnp.int32) + 256 * jnp.arange(3)]


# --- warps -----------------------------------------------------------------------------------


def _reflect_round(coord, size: int):
    """`host._reflect_round`: TF's FILL_REFLECT map, clamp, round half away from zero."""
    if size <= 1:
        return jnp.zeros(coord.shape, jnp.int32)
    period = _F32(2 * size)
    low = _rounded(period * jnp.trunc(-coord / period)) + coord
    low = jnp.where(low < -size, low + period, -low - _F32(1.0))
    high = coord - _rounded(period * jnp.trunc(coord / period))
    high = jnp.where(high >= size, period - high - _F32(1.0), high)
    coord = jnp.where(coord < 0, low, jnp.where(coord > size - 1, high, coord))
    coord = jnp.clip(coord, 0, size - 1)
    index = jnp.floor(coord)
    return (index + ((coord - index) >= 0.5)).astype(jnp.int32)


def _warp(image, matrix):
    """`host._warp`: output (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2)."""
    height, width = image.shape[:2]
    xs = jnp.arange(width, dtype=_F32)[None, :]
    ys = jnp.arange(height, dtype=_F32)[:, None]
    a0, a1, a2, b0, b1, b2 = (matrix[i] for i in range(6))
    in_x = (_rounded(a0 * xs) + _rounded(a1 * ys)) + a2
    in_y = (_rounded(b0 * xs) + _rounded(b1 * ys)) + b2
    return image[_reflect_round(in_y, height), _reflect_round(in_x, width)]


# --- blends ----------------------------------------------------------------------------------


def _grayscale(image):
    """`host._grayscale_float`: HxW float32 holding the truncated grey values."""
    image = image.astype(jnp.int32)
    products = jnp.asarray(_GRAY_PRODUCTS)
    red, green, blue = (products[image[..., c], c] for c in range(3))
    return jnp.floor(((red + green) + blue) * _F32(255.5))


def _smoothed(image):
    """`host.sharpness`'s base: the 3x3 PIL smoothing summed in TF's order, truncated, inside a
    border of the image's own pixels."""
    x = image.astype(_F32)
    height, width = image.shape[:2]
    edge = _rounded(x * _SMOOTH[0, 0])
    centre = _rounded(x * _SMOOTH[1, 1])
    total = None
    for dy in range(3):
        for dx in range(3):
            tap = (centre if (dy, dx) == (1, 1) else edge)[dy:dy + height - 2, dx:dx + width - 2]
            total = tap if total is None else total + tap
    return x.at[1:-1, 1:-1].set(jnp.floor(total))


def _blend(base, image, factor):
    """`host.blend(base, image, factor)` on a float32 base holding integers."""
    return _to_uint8(_rounded((image.astype(_F32) - base) * factor) + base)


# --- one layer, a policy, erasing ------------------------------------------------------------


def _cutout(image, args):
    height, width = image.shape[:2]
    cy, cx, pad = (args[i].astype(jnp.int32) for i in range(3))
    rows = jnp.arange(height)[:, None]
    cols = jnp.arange(width)[None, :]
    inside = (rows >= cy - pad) & (rows < cy + pad) & (cols >= cx - pad) & (cols < cx + pad)
    return jnp.where(inside[..., None], jnp.uint8(host.REPLACE_VALUE), image)


def _layer(image, code, args):
    """One op (`code`, `args` from `host.device_args`) on one uint8 HWC image; -1: unchanged."""
    form = jnp.asarray(_FORM_OF_CODE)[code + 1]
    table = _tables(image, args)[jnp.asarray(_TABLE_OF_CODE)[code + 1]]
    gray = _grayscale(image)[..., None]
    base = jnp.where(code == _SHARPNESS, _smoothed(image), jnp.broadcast_to(gray, image.shape))
    return lax.select_n(jnp.where(form < 0, 4, form), _apply_table(image, table), _warp(image, args),
                        _blend(base, image, args[0]), _cutout(image, args), image)


def _erase(image, boxes, noise_table):
    """`host.RandomErasing.__call__` with its drawn `boxes` [count, 5] on one uint8 image."""
    height, width, channels = image.shape
    index = jnp.arange(height * width * channels, dtype=jnp.uint32).reshape(image.shape)
    rows = jnp.arange(height)[:, None, None]
    cols = jnp.arange(width)[None, :, None]
    for k in range(boxes.shape[0]):
        y0, y1, x0, x1 = (boxes[k, i] for i in range(4))
        seed = lax.bitcast_convert_type(boxes[k, 4], jnp.uint32)
        level = (host.noise_hash(seed, index) >> 16).astype(jnp.int32)
        noise = noise_table.reshape(-1)[level + host.NOISE_LEVELS * jnp.arange(channels)]
        inside = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
        image = jnp.where(inside, noise, image)
    return image


def augment_example(image, ops, args, boxes, noise_table):
    """One example: the policy's ops in order, then the erasing rectangles (uint8 HWC)."""
    for layer in range(ops.shape[0]):
        image = _layer(image, ops[layer], args[layer])
    if boxes.shape[0]:
        image = _erase(image, boxes, noise_table)
    return image


def augment_batch(images, batch, *, noise_table):
    """Apply the draws `batch` carries ("augment_ops", "augment_args", "erase_boxes", from
    `host.DeviceDraws`) to uint8 `images` [B, H, W, 3], vmapped over the examples.

    `noise_table`: `host.erasing_noise_table(mean, std)` (0-255 scale) of the run."""
    table = jnp.asarray(noise_table)
    return jax.vmap(augment_example, in_axes=(0, 0, 0, 0, None))(
        images, batch["augment_ops"], batch["augment_args"], batch["erase_boxes"], table)

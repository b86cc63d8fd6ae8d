"""Region-of-interest JPEG decoding through the TurboJPEG 3 API of libjpeg-turbo (ctypes).

tf.data's `decode_and_crop_jpeg` is fast because libjpeg-turbo decodes only the crop: rows
above it are entropy-decoded and skipped, rows below it are never read, and only the iMCU
columns that cover it go through the inverse DCT, upsampling and colour conversion. simplejpeg
and Pillow always decode the whole image. `decode_region` gets the same saving by calling
`tj3SetCroppingRegion` + `tj3Decompress8` directly.

The output is bit-identical to decoding the whole image (at the same DCT scale) and slicing
the box out of it: the region handed to libjpeg-turbo is widened by `MARGIN` pixels on every
side and its left edge rounded down to an iMCU boundary, so that chroma upsampling at the box's
edges sees the same neighbours as in a full decode; the margin is sliced off again.
`tests/data/test_turbo.py` checks the identity on random boxes for every chroma subsampling,
greyscale, progressive and restart-marker files and DCT scales.

The library comes from the pinned `turbojpeg` wheel (which bundles libjpeg-turbo's TurboJPEG 3
library), or from the path in the environment variable `FLAXNETS_TURBOJPEG`. Where neither
loads (another platform, an old system library without the TurboJPEG 3 API), `available()` is
False and callers decode the whole image instead; nothing else changes.

`decode_region` returns None, instead of raising, for anything it does not handle exactly
(CMYK/YCCK files, 12-bit files, any libjpeg-turbo warning or error such as a corrupt or
truncated stream): the caller then takes the full-decode path, which has the strict error
handling. A file that does not end with the end-of-image marker also takes that path, so a
truncated file is rejected whether or not the crop lies in its intact part.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.metadata
import math
import os
import threading
from pathlib import Path

import numpy as np

# TurboJPEG 3 constants (turbojpeg.h).
_TJINIT_DECOMPRESS = 1
_TJPARAM_SUBSAMP = 4
_TJPARAM_JPEGWIDTH = 5
_TJPARAM_JPEGHEIGHT = 6
_TJPARAM_PRECISION = 7
_TJPARAM_COLORSPACE = 8
_TJPARAM_FASTDCT = 10
_TJPF_RGB = 0
_TJCS_RGB, _TJCS_YCBCR, _TJCS_GRAY = 0, 1, 2
# iMCU width in pixels per subsampling (TJSAMP_444, 422, 420, GRAY, 440, 411, 441).
_MCU_WIDTH = (8, 16, 16, 8, 8, 32, 8)
# Pixels of context kept around the requested box (see the module docstring).
MARGIN = 2
# The DCT scales k/8 libjpeg-turbo decodes at without a resize, largest first, as the reduced
# fractions TurboJPEG accepts (1/1, 7/8, 3/4, 5/8, 1/2, 3/8, 1/4, 1/8).
SCALES = tuple((k // math.gcd(k, 8), 8 // math.gcd(k, 8)) for k in range(8, 0, -1))


class _Region(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("w", ctypes.c_int), ("h", ctypes.c_int)]


class _Scale(ctypes.Structure):
    _fields_ = [("num", ctypes.c_int), ("denom", ctypes.c_int)]


def _candidate_paths() -> list[str]:
    paths = []
    if os.environ.get("FLAXNETS_TURBOJPEG"):
        paths.append(os.environ["FLAXNETS_TURBOJPEG"])
    try:
        for file in importlib.metadata.files("turbojpeg") or []:
            if "libturbojpeg" in file.name:
                paths.append(str(file.locate()))
    except importlib.metadata.PackageNotFoundError:
        pass
    system = ctypes.util.find_library("turbojpeg")
    if system:
        paths.append(system)
    return paths


def _load():
    for path in _candidate_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if not hasattr(lib, "tj3SetCroppingRegion"):  # TurboJPEG 2.x: no region decode
            continue
        lib.tj3Init.restype = ctypes.c_void_p
        lib.tj3Init.argtypes = [ctypes.c_int]
        lib.tj3Destroy.argtypes = [ctypes.c_void_p]
        lib.tj3DecompressHeader.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.tj3Get.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.tj3Set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        lib.tj3SetCroppingRegion.argtypes = [ctypes.c_void_p, _Region]
        lib.tj3SetScalingFactor.argtypes = [ctypes.c_void_p, _Scale]
        lib.tj3Decompress8.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int,
            ctypes.c_int,
        ]
        return lib, path
    return None, None


_lib, _lib_path = None, None
_loaded = False
_load_lock = threading.Lock()
_local = threading.local()


def _library():
    global _lib, _lib_path, _loaded
    if not _loaded:
        with _load_lock:
            if not _loaded:
                _lib, _lib_path = _load()
                _loaded = True
    return _lib


def available() -> bool:
    """Whether a TurboJPEG 3 library loaded (region decoding is used)."""
    return _library() is not None


def library_path() -> str | None:
    """The path of the loaded TurboJPEG library, or None."""
    _library()
    return _lib_path


class _Handle:
    """One decompressor per thread (TurboJPEG handles are not thread-safe)."""

    def __init__(self, lib):
        self.lib = lib
        self.ptr = lib.tj3Init(_TJINIT_DECOMPRESS)
        if not self.ptr:
            raise OSError("tj3Init failed")

    def __del__(self):
        if getattr(self, "ptr", None):
            self.lib.tj3Destroy(self.ptr)
            self.ptr = None


def _handle():
    lib = _library()
    if lib is None:
        return None
    handle = getattr(_local, "handle", None)
    if handle is None:
        handle = _local.handle = _Handle(lib)
    return handle


def scaled(size: int, scale: tuple[int, int]) -> int:
    """libjpeg-turbo's TJSCALED: the decoded length of `size` pixels at DCT scale num/denom."""
    num, denom = scale
    return (size * num + denom - 1) // denom


def pick_scale(height: int, width: int, min_height: int, min_width: int) -> tuple[int, int]:
    """The smallest DCT scale k/8 at which the whole image is still at least `min_height` x
    `min_width` (1/1 if none is smaller)."""
    best = (1, 1)
    for scale in SCALES:
        if scaled(height, scale) >= min_height and scaled(width, scale) >= min_width:
            best = scale
    return best


def min_decode_size(
    box: tuple[int, int, int, int], size: tuple[int, int], out_size: tuple[int, int]
) -> tuple[int, int]:
    """The smallest whole-image size (height, width) at which `box` (in an image of `size`)
    still covers at least `out_size` pixels: what a DCT-scaled decode must not go below."""
    return (math.ceil(out_size[0] * size[0] / box[2]), math.ceil(out_size[1] * size[1] / box[3]))


def map_box(
    box: tuple[int, int, int, int], size: tuple[int, int], scaled_size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """`box` = (y, x, height, width) in an image of `size` = (height, width), mapped into the
    same image decoded at `scaled_size` (rounded to whole pixels, at least one pixel)."""
    if scaled_size == size:
        return box
    y, x, crop_h, crop_w = box
    scale_y, scale_x = scaled_size[0] / size[0], scaled_size[1] / size[1]
    y0, x0 = int(round(y * scale_y)), int(round(x * scale_x))
    y1 = min(scaled_size[0], int(round((y + crop_h) * scale_y)))
    x1 = min(scaled_size[1], int(round((x + crop_w) * scale_x)))
    return y0, x0, max(y1 - y0, 1), max(x1 - x0, 1)


def decode_region(
    data: bytes, box: tuple[int, int, int, int], min_size: tuple[int, int] | None = None,
    *, fast_dct: bool = True,
) -> np.ndarray | None:
    """RGB uint8 pixels of `box` = (y, x, height, width) (full-resolution coordinates).

    `fast_dct`: libjpeg's fast integer inverse DCT (JDCT_IFAST), which TensorFlow's JPEG ops
    use by default (`dct_method=""`), so the pixels are tf.data's; False: the accurate one.

    Without `min_size`: identical to decoding the whole image and slicing the box. With
    `min_size` = (height, width): the image is decoded at the smallest DCT scale k/8 at which
    the box still has at least that many pixels (`pick_scale`), the box mapped into that scale
    by `map_box`; identical to decoding the whole image at that scale and slicing.

    Returns None where the fast path does not apply (no library, unsupported colour space or
    precision, a box outside the image, a missing end-of-image marker, or any libjpeg-turbo
    warning or error).
    """
    handle = _handle()
    if handle is None:
        return None
    if not isinstance(data, bytes):  # ctypes takes bytes (a memoryview, bytearray, np.bytes_)
        data = bytes(data)
    if data[-2:] != b"\xff\xd9":
        return None
    lib, ptr = handle.lib, handle.ptr
    if lib.tj3DecompressHeader(ptr, data, len(data)) != 0:
        return None
    subsamp = lib.tj3Get(ptr, _TJPARAM_SUBSAMP)
    if (lib.tj3Get(ptr, _TJPARAM_COLORSPACE) not in (_TJCS_RGB, _TJCS_YCBCR, _TJCS_GRAY)
            or lib.tj3Get(ptr, _TJPARAM_PRECISION) != 8
            or not 0 <= subsamp < len(_MCU_WIDTH)):
        return None
    full = (lib.tj3Get(ptr, _TJPARAM_JPEGHEIGHT), lib.tj3Get(ptr, _TJPARAM_JPEGWIDTH))
    y, x, crop_h, crop_w = box
    if crop_h <= 0 or crop_w <= 0 or y < 0 or x < 0 or y + crop_h > full[0] or x + crop_w > full[1]:
        return None  # the caller's full decode slices (and clips) the box as NumPy does
    scale = (1, 1)
    if min_size is not None:
        scale = pick_scale(*full, *min_decode_size(box, full, min_size))
    height, width = scaled(full[0], scale), scaled(full[1], scale)
    y, x, crop_h, crop_w = map_box(box, full, (height, width))
    mcu_w = scaled(_MCU_WIDTH[subsamp], scale)
    x0 = max(0, x - MARGIN) // mcu_w * mcu_w
    y0 = max(0, y - MARGIN)
    x1 = min(width, x + crop_w + MARGIN)
    y1 = min(height, y + crop_h + MARGIN)
    if lib.tj3Set(ptr, _TJPARAM_FASTDCT, int(fast_dct)) != 0:
        return None
    if lib.tj3SetScalingFactor(ptr, _Scale(*scale)) != 0:
        return None
    if lib.tj3SetCroppingRegion(ptr, _Region(x0, y0, x1 - x0, y1 - y0)) != 0:
        return None
    out = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
    if lib.tj3Decompress8(ptr, data, len(data), out.ctypes.data, 0, _TJPF_RGB) != 0:
        return None
    return out[y - y0 : y - y0 + crop_h, x - x0 : x - x0 + crop_w]


def describe() -> str:
    """One line for logs and benchmark reports."""
    path = library_path()
    return f"TurboJPEG region decode: {Path(path).name}" if path else (
        "TurboJPEG region decode unavailable (full decodes)")

"""Image decoding that survives ImageNet's odd files.

ImageNet-2012 contains CMYK JPEGs, greyscale JPEGs and one PNG saved as `.JPEG`; disks add
truncated and empty files. `decode_image` returns RGB uint8 for everything decodable:
JPEGs go through simplejpeg (libjpeg-turbo, which also converts greyscale and CMYK to RGB),
anything simplejpeg refuses goes to Pillow, which is strict about truncation. PNG and other
formats are recognised by their magic bytes, not by the file name. What cannot be decoded
raises `DecodeError`; callers count it and report each path once with `report_bad_file`.
`decode_crop` decodes only a crop's region where libjpeg-turbo's TurboJPEG 3 library is
available (`flaxnets.data.turbo`), with the same pixels as the whole-image decode, so a crop
has exactly the pixels tf.data's `decode_and_crop_jpeg` gives the references. A reduced-DCT-scale
decode (`dct_scaled=True`) is an explicit opt-in: it is faster but changes the pixels.
"""

from __future__ import annotations

import io
import sys
import threading

import numpy as np
import simplejpeg

from flaxnets.data import turbo

_JPEG_MAGIC = b"\xff\xd8"

_reported: set[str] = set()
_reported_lock = threading.Lock()


class DecodeError(ValueError):
    """An image that cannot be decoded (empty, truncated, corrupt or of an unknown format)."""


def is_jpeg(data: bytes) -> bool:
    """Whether `data` starts with the JPEG start-of-image marker."""
    return data[:2] == _JPEG_MAGIC


def report_bad_file(name: str, reason: str) -> bool:
    """Say on stderr, once per path and process, that an undecodable image is skipped: one line
    `warning: skipping undecodable image PATH: REASON`. Returns True the first time.

    Every command that reads images reports through here and then continues without the file
    (training substitutes another example, evaluation masks it out, predict and calibration
    leave it out); each ends with a count of what it skipped."""
    with _reported_lock:
        if name in _reported:
            return False
        _reported.add(name)
    print(f"warning: skipping undecodable image {name}: {reason}", file=sys.stderr, flush=True)
    return True


def skipped_note(count: int) -> str:
    """The end-of-command summary of `count` skipped files ("" when none)."""
    return f"{count} undecodable image{'s' if count != 1 else ''} skipped" if count else ""


def _decode_with_pillow(data: bytes) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            # convert() forces a full read, so a truncated file fails here, not later.
            return np.asarray(image.convert("RGB"))
    except Exception as e:  # Pillow raises many types (OSError, SyntaxError, ...)
        raise DecodeError(f"{type(e).__name__}: {e}") from None


# Colour components per simplejpeg colour space, as tf.image.extract_jpeg_shape counts them.
_JPEG_COMPONENTS = {"Gray": 1, "CMYK": 4, "YCCK": 4}


def image_header(data: bytes) -> tuple[int, int, int]:
    """(height, width, channels) of an encoded image, reading only the header where possible.

    For a JPEG, `channels` is the file's number of colour components (1 greyscale, 3 colour, 4
    CMYK), as `tf.image.extract_jpeg_shape` reports it; other formats report 3 (they are decoded
    to RGB, as `tf.io.decode_image(..., channels=3)` does).
    """
    if not data:
        raise DecodeError("empty file")
    if is_jpeg(data):
        try:
            height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
            return height, width, _JPEG_COMPONENTS.get(colorspace, 3)
        except ValueError:
            pass
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            return height, width, 3
    except Exception as e:
        raise DecodeError(f"{type(e).__name__}: {e}") from None


def image_size(data: bytes) -> tuple[int, int]:
    """(height, width) of an encoded image, reading only the header where possible."""
    return image_header(data)[:2]


def decode_image(
    data: bytes, *, min_height: int = 0, min_width: int = 0, fast_dct: bool = True
) -> np.ndarray:
    """Decode an encoded image to RGB uint8 [H, W, 3].

    `fast_dct`: JPEGs use libjpeg's fast integer inverse DCT, as TensorFlow's `decode_jpeg` /
    `decode_and_crop_jpeg` do by default (`dct_method=""` is JDCT_IFAST), so the pixels are the
    references'; the accurate DCT differs by about one grey level on average. Files that only
    Pillow reads use its (accurate) DCT.

    `min_height` / `min_width` let a JPEG decode at a reduced DCT scale (k/8 of full size, the
    smallest such that the output is at least that large); other formats decode at full size.
    Raises `DecodeError` if the data cannot be decoded correctly (including truncated files).
    """
    if not data:
        raise DecodeError("empty file")
    if is_jpeg(data):
        try:
            return simplejpeg.decode_jpeg(
                data, colorspace="RGB", fastdct=fast_dct, min_height=min_height,
                min_width=min_width)
        except ValueError:
            # Pillow decodes the rest (unusual colour spaces) and is strict about truncation.
            pass
    image = _decode_with_pillow(data)
    if image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise DecodeError(f"unexpected decoded shape {image.shape}")
    return image


def decode_crop(
    data: bytes,
    box: tuple[int, int, int, int] | None,
    out_size: tuple[int, int],
    *,
    dct_scaled: bool = False,
    fast_dct: bool = True,
) -> np.ndarray:
    """Decode the crop `box` = (y, x, height, width) of an image (full-resolution coordinates).

    By default the crop has exactly the pixels of the full-resolution decode (what the
    references' `decode_and_crop_jpeg` gives). With `dct_scaled`, a JPEG is decoded at the
    smallest DCT scale at which the crop still has at least `out_size` = (height, width)
    pixels, and the box is mapped into that scale; the caller resizes the result to `out_size`
    anyway, so only resampling detail changes (the DCT downscale acts as an anti-alias
    prefilter and snaps the box to the coarser grid).
    `box=None` means the whole image.

    Where the TurboJPEG 3 library is available (`flaxnets.data.turbo`), a JPEG crop is decoded
    as a region: only the rows and iMCU columns that cover it go through the inverse DCT and
    colour conversion, as tf.data's `decode_and_crop_jpeg` does. The pixels are identical to
    the full decode's; anything the region decoder does not handle takes the full-decode path.
    `fast_dct`: as in `decode_image` (the references' default, JDCT_IFAST).
    """
    if box is not None and is_jpeg(data):
        region = turbo.decode_region(data, box, out_size if dct_scaled else None,
                                     fast_dct=fast_dct)
        if region is not None:
            return region
        if dct_scaled:
            size = image_size(data)
            min_h, min_w = turbo.min_decode_size(box, size, out_size)
            image = decode_image(data, min_height=min_h, min_width=min_w, fast_dct=fast_dct)
            y, x, crop_h, crop_w = turbo.map_box(box, size, image.shape[:2])
            return image[y : y + crop_h, x : x + crop_w]
    image = decode_image(data, fast_dct=fast_dct)
    if box is None:
        return image
    y, x, crop_h, crop_w = box
    return image[y : y + crop_h, x : x + crop_w]

"""The odd files a user's photo folder holds, for the bad-file policy tests of every command that
reads images: a zero-byte and a truncated JPEG (undecodable: skipped, reported once, counted)
and a PNG named .jpg and a CMYK JPEG (decodable: used)."""

import io

import numpy as np
from PIL import Image

#: The files `write_odd_files` writes that no decoder can read.
UNDECODABLE = ("zero.jpg", "truncated.jpg")
#: The files it writes that decode (by magic bytes; CMYK converted to RGB).
DECODABLE = ("png_named.jpg", "cmyk.jpg")


def _encoded(image, fmt, mode="RGB"):
    buffer = io.BytesIO()
    Image.fromarray(image).convert(mode).save(buffer, fmt, quality=95)
    return buffer.getvalue()


def _image(size, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[0], 0:size[1]]
    return np.stack([127 + 120 * np.sin(x / (4 + 6 * rng.random())) * np.cos(y / (4 + 6 * rng.random()))
                     for _ in range(3)], -1).clip(0, 255).astype(np.uint8)


def write_good_images(folder, count, size=(40, 48), seed=0):
    """`count` ordinary JPEGs good000.jpg ... in `folder` (created); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"good{i:03d}.jpg" for i in range(count)]
    for i, path in enumerate(paths):
        path.write_bytes(_encoded(_image(size, seed * 1000 + i), "JPEG"))
    return paths


def write_odd_files(folder, size=(40, 48), seed=0):
    """Write the four files into `folder` (created); returns {name: path}."""
    image = _image(size, seed)
    jpeg = _encoded(image, "JPEG")
    contents = {"zero.jpg": b"", "truncated.jpg": jpeg[:len(jpeg) // 2],
                "png_named.jpg": _encoded(image, "PNG"), "cmyk.jpg": _encoded(image, "JPEG", "CMYK")}
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, data in contents.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    return paths


def reported(err):
    """The paths named by `warning: skipping undecodable image PATH: ...` lines of `err`, one per line."""
    prefix = "warning: skipping undecodable image "
    return [line[len(prefix):].split(": ")[0] for line in err.splitlines() if line.startswith(prefix)]

"""Tiny generated images and sources shared by the data tests."""

import io

import numpy as np
from PIL import Image


def smooth_image(height, width, seed=0):
    """A smooth RGB uint8 image (JPEG-friendly), different per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    channels = [
        127 + 120 * np.sin(x / (5 + rng.random() * 10) + rng.random() * 6) * np.cos(y / (5 + rng.random() * 10))
        for _ in range(3)
    ]
    return np.stack(channels, -1).clip(0, 255).astype(np.uint8)


def encode(image, fmt="JPEG", mode="RGB", quality=95):
    buffer = io.BytesIO()
    Image.fromarray(image).convert(mode).save(buffer, fmt, quality=quality)
    return buffer.getvalue()


def write_class_folders(root, counts, size=(20, 24), fmt="JPEG", ext=".JPEG"):
    """root/c{k}/img{i}.JPEG for counts[k] images per class; returns the list of paths."""
    paths = []
    for label, count in enumerate(counts):
        folder = root / f"c{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            path = folder / f"img{i:03d}{ext}"
            path.write_bytes(encode(smooth_image(*size, seed=label * 1000 + i), fmt))
            paths.append(path)
    return paths


class IndexSource:
    """In-memory source whose label is the example index (so batches show which examples)."""

    def __init__(self, n, size=(12, 16), bad=()):
        self._data = encode(smooth_image(*size), "PNG")
        self.bad = set(bad)
        self.num_classes = n
        self.class_names = [str(i) for i in range(n)]
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        return (b"" if index in self.bad else self._data), int(index)

    def name(self, index):
        return f"memory://{id(self)}/{index}"

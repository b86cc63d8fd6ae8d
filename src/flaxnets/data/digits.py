"""scikit-learn's bundled 8x8 digits as a small folder-of-classes image data set (`make demo`)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np


def export_digits(out_dir, *, val_fraction: float = 0.2, seed: int = 0, size: int = 32,
                  image_format: str = "png") -> dict:
    """Write the 1,797 digits as `out_dir/{train,val}/{0..9}/NNNN.png` (or .jpg).

    Images are upscaled from 8x8 to `size` x `size` (bicubic) so a CNN has something to crop,
    as RGB on a white background. The held-out split is stratified by class and fixed by
    `seed`. Returns {"train": count, "val": count, "num_classes": 10}.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if image_format not in ("png", "jpg"):
        raise ValueError(f"image_format {image_format!r}: expected 'png' or 'jpg'")
    digits = load_digits()
    # 0..16 ink -> dark digit on white.
    images = (255 - digits.images * (255 / 16)).clip(0, 255).astype(np.uint8)
    indices = np.arange(len(images))
    train_idx, val_idx = train_test_split(
        indices, test_size=val_fraction, random_state=seed, stratify=digits.target)
    counts = {}
    for split, split_idx in (("train", train_idx), ("val", val_idx)):
        for index in sorted(split_idx):
            folder = Path(out_dir) / split / str(digits.target[index])
            os.makedirs(folder, exist_ok=True)
            image = cv2.resize(images[index], (size, size), interpolation=cv2.INTER_CUBIC)
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
            params = [cv2.IMWRITE_JPEG_QUALITY, 95] if image_format == "jpg" else []
            cv2.imwrite(str(folder / f"{index:04d}.{image_format}"), image, params)
        counts[split] = len(split_idx)
    counts["num_classes"] = int(len(digits.target_names))
    return counts

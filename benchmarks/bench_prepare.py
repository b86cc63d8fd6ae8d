"""`flaxnets prepare` throughput, side by side in one run: packing ImageNet-style training images
from the archive as downloaded (a tar of per-class tars, `--train-tar`) against from the same
images extracted into class folders, with one and with two worker processes.

Images: ~500x375 JPEGs cut from scikit-image's sample photos, with a little noise so that they
average about 110 KB, ImageNet's mean file size. Both forms are written just before they are
timed, so both are read from the page cache: the figures compare the work of each path
(indexing, reading, verifying every image by decoding it, writing shards), not disks.

Each round times every (form, workers) pair once, in turn; the median over rounds is reported.
Timed: opening the source (listing folders / indexing the tars) plus `prepare_split`.

Run: PYTHONPATH=src nice -n 10 python benchmarks/bench_prepare.py [--images 3000] [--classes 20] [--rounds 3]
     [--examples-per-shard 250] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np


def make_jpegs(count: int, seed: int = 0) -> list[bytes]:
    """`count` ~500x375 JPEGs of about 110 KB (photo crops plus mild noise, quality 90)."""
    import cv2
    import simplejpeg
    import skimage.data

    photos = [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.astronaut(),
              skimage.data.rocket(), skimage.data.immunohistochemistry()]
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        size = (500, 375) if rng.random() < 0.7 else (375, 500)
        crop = cv2.resize(photo[y : y + ch, x : x + cw], size, interpolation=cv2.INTER_AREA)
        noisy = np.clip(crop + rng.normal(0, 7.5, crop.shape), 0, 255).astype(np.uint8)
        images.append(simplejpeg.encode_jpeg(np.ascontiguousarray(noisy), quality=90))
    return images


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def write_both_forms(root: Path, images: list[bytes], classes: int) -> tuple[Path, Path]:
    """The same images as class folders (root/folder/train/<wnid>/) and as a tar of per-class
    tars (root/ILSVRC2012_img_train.tar)."""
    per_class: dict[str, dict[str, bytes]] = {}
    for i, data in enumerate(images):
        wnid = f"n{1440764 + i % classes:08d}"
        per_class.setdefault(wnid, {})[f"{wnid}_{i}.JPEG"] = data
    folder = root / "folder" / "train"
    for wnid, files in per_class.items():
        (folder / wnid).mkdir(parents=True)
        for name, data in files.items():
            (folder / wnid / name).write_bytes(data)
    archive = root / "ILSVRC2012_img_train.tar"
    archive.write_bytes(_tar({f"{wnid}.tar": _tar(files) for wnid, files in per_class.items()}))
    return folder, archive


def _time_prepare(form: str, path: Path, out: Path, workers: int, examples_per_shard: int) -> float:
    from flaxnets.data.imagenet_archives import open_train_archive
    from flaxnets.data.records import prepare_split
    from flaxnets.data.sources import FolderSource

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    source = open_train_archive(path, workers=workers) if form == "tar" else FolderSource(path)
    manifest = prepare_split(source, out, split="train", workers=workers, log=lambda line: None,
                             examples_per_shard=examples_per_shard)
    elapsed = time.perf_counter() - start
    return manifest["num_examples"] / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--examples-per-shard", type=int, default=250,
                        help="small enough that two workers share the shards evenly")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    # Imported here once, so that neither form pays for the first import (workers fork from us).
    import array_record.python.array_record_module  # noqa: F401

    import flaxnets.data.decode  # noqa: F401

    images = make_jpegs(args.images)
    mean_kb = sum(map(len, images)) / len(images) / 1000
    rounds: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder, archive = write_both_forms(Path(tmp), images, args.classes)
        for _ in range(args.rounds):
            for workers in (1, 2):
                for form, path in (("folder", folder), ("tar", archive)):
                    rate = _time_prepare(form, path, Path(tmp) / "out", workers, args.examples_per_shard)
                    rounds.setdefault(f"{form}, {workers} worker(s)", []).append(rate)
    results = {name: float(np.median(rates)) for name, rates in rounds.items()}
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"
    date = time.strftime("%Y-%m-%d")
    if args.json:
        print(json.dumps({"images_per_second": results, "rounds": rounds, "machine": machine, "date": date,
                          "images": args.images, "classes": args.classes, "mean_kb": mean_kb}))
        return 0
    print(f"{args.images} JPEGs (mean {mean_kb:.0f} KB) in {args.classes} classes, median of {args.rounds} "
          f"round(s); {machine}; load average {os.getloadavg()[0]:.1f}; {date}")
    print(f"{'source':28s} {'images/s':>9s} {'tar / folder':>13s}")
    for name, rate in results.items():
        workers = name.split(", ")[1]
        print(f"{name:28s} {rate:9.0f} {rate / results[f'folder, {workers}']:13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

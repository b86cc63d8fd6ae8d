"""Input-pipeline throughput on one core, side by side in one run:

  1. raw JPEG decode with simplejpeg (the ceiling for any decode-based pipeline),
  2. flaxnets' plain train transform (`flaxnets.data.transforms.train_transform`, the tf_vision
     flavour, the default): header read, TF-style random crop, full-resolution region decode of
     the crop with the references' fast integer IDCT (TurboJPEG 3, `flaxnets.data.turbo`), OpenCV
     bilinear resize to 224, flip; the same with the opt-in `dct_scaled_decode=True` (decode at a
     reduced DCT scale where the crop allows); and the default with region decoding switched off
     (whole-image decode, then slice),
  3. optionally tf.data: extract_jpeg_shape + sample_distorted_bounding_box +
     decode_and_crop_jpeg + bilinear resize + flip, on the same files, one thread.

Images: ~500x375 quality-90 JPEGs cut and resized from scikit-image's bundled sample photos.

TensorFlow is never a dependency of flaxnets. For (3), make a scratch venv once and pass its
python with --tf-python:

    python3.11 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu
    python benchmarks/bench_data_pipeline.py --tf-python /tmp/tfvenv/bin/python

Run: PYTHONPATH=src python benchmarks/bench_data_pipeline.py [--images 2000] [--rounds 3] [--tf-python PY]

It also reports how far the opt-in DCT-scaled decode moves the pixels: the mean absolute
difference (grey levels) between its output and the default's for the same crops, over the files.

With --rounds N the pipelines are timed N times in turn (decode, ours, ours without region
decode, tf.data, decode, ...) and the median rate of each is reported, so that a change of
machine load between pipelines does not decide the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_TF_SCRIPT = r"""
import json, sys, time
import tensorflow as tf
tf.config.threading.set_inter_op_parallelism_threads(1)
tf.config.threading.set_intra_op_parallelism_threads(1)
files, total, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = [open(p, "rb").read() for p in open(files).read().split()]

def transform(image_bytes):
    shape = tf.image.extract_jpeg_shape(image_bytes)
    begin, crop_size, _ = tf.image.sample_distorted_bounding_box(
        shape, tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]), min_object_covered=0.08,
        aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0), max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    y, x, _ = tf.unstack(begin)
    h, w, _ = tf.unstack(crop_size)
    image = tf.image.decode_and_crop_jpeg(image_bytes, tf.stack([y, x, h, w]), channels=3)
    image = tf.image.resize(image, [size, size], method="bilinear")
    return tf.image.random_flip_left_right(image)

options = tf.data.Options()
options.threading.private_threadpool_size = 1
options.threading.max_intra_op_parallelism = 1
ds = tf.data.Dataset.from_tensor_slices(data).repeat().map(transform).with_options(options)
it = iter(ds)
for _ in range(50):
    next(it)
start = time.perf_counter()
for _ in range(total):
    next(it)
seconds = time.perf_counter() - start
print(json.dumps({"images_per_second": total / seconds, "tensorflow": tf.__version__}))
"""


def make_images(folder: Path, count: int, seed: int = 0, scale: float = 1.0) -> list[Path]:
    """`count` ~500x375 (or 375x500) quality-90 JPEGs from scikit-image's sample photos, both
    sides times `scale`."""
    import cv2
    import simplejpeg
    import skimage.data

    photos = [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.astronaut(),
              skimage.data.rocket(), skimage.data.immunohistochemistry()]
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        crop_h, crop_w = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
        y, x = rng.integers(0, h - crop_h + 1), rng.integers(0, w - crop_w + 1)
        out = (500, 375) if rng.random() < 0.7 else (375, 500)  # (width, height)
        out = (round(out[0] * scale), round(out[1] * scale))
        image = cv2.resize(photo[y:y + crop_h, x:x + crop_w], out,
                           interpolation=cv2.INTER_AREA if scale <= 1 else cv2.INTER_CUBIC)
        path = folder / f"img{i:03d}.jpg"
        path.write_bytes(simplejpeg.encode_jpeg(np.ascontiguousarray(image), quality=90))
        paths.append(path)
    return paths


def _rate(function, data: list[bytes], total: int) -> float:
    for i in range(20):
        function(data[i % len(data)])
    start = time.perf_counter()
    for i in range(total):
        function(data[i % len(data)])
    return total / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="images timed per pipeline")
    parser.add_argument("--files", type=int, default=64, help="distinct JPEG files generated")
    parser.add_argument("--size", type=int, default=224, help="output resolution")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the ~500x375 image sides by this (larger photos)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="time every pipeline this many times in turn; report medians")
    parser.add_argument("--tf-python", help="python of a scratch venv with tensorflow-cpu")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    import cv2
    import simplejpeg

    from flaxnets.data.transforms import train_transform

    cv2.setNumThreads(1)  # one core for every pipeline
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(Path(tmp), args.files, scale=args.scale)
        data = [p.read_bytes() for p in paths]
        rng = np.random.default_rng(0)
        listing = Path(tmp) / "files.txt"
        listing.write_text("\n".join(map(str, paths)))
        from flaxnets.data import turbo

        def ours(d):
            return train_transform(d, rng, image_size_px=args.size, crop="tf_vision")

        def ours_dct_scaled(d):
            return train_transform(d, rng, image_size_px=args.size, crop="tf_vision",
                                   dct_scaled_decode=True)

        def ours_whole_image(d):
            real, turbo._handle = turbo._handle, lambda: None
            try:
                return ours(d)
            finally:
                turbo._handle = real

        rounds: dict[str, list[float]] = {}
        tf_version = None
        for _ in range(args.rounds):
            rounds.setdefault("raw JPEG decode (simplejpeg)", []).append(_rate(
                lambda d: simplejpeg.decode_jpeg(d, colorspace="RGB"), data, args.images))
            rounds.setdefault("flaxnets train transform", []).append(
                _rate(ours, data, args.images))
            rounds.setdefault("flaxnets, DCT-scaled decode (opt-in)", []).append(
                _rate(ours_dct_scaled, data, args.images))
            rounds.setdefault("flaxnets, whole-image decode", []).append(
                _rate(ours_whole_image, data, args.images))
            if args.tf_python:
                env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
                proc = subprocess.run(
                    [args.tf_python, "-c", _TF_SCRIPT, str(listing), str(args.images),
                     str(args.size)], capture_output=True, text=True, env=env)
                if proc.returncode != 0:
                    print(proc.stderr[-2000:], file=sys.stderr)
                    return 1
                tf_result = json.loads(proc.stdout.strip().splitlines()[-1])
                tf_version = tf_result["tensorflow"]
                rounds.setdefault("tf.data decode_and_crop_jpeg", []).append(
                    tf_result["images_per_second"])
        results = {name: float(np.median(rates)) for name, rates in rounds.items()}
        pixel_difference = float(np.mean([
            np.abs(train_transform(d, np.random.default_rng(i), image_size_px=args.size).astype(int)
                   - train_transform(d, np.random.default_rng(i), image_size_px=args.size,
                                     dct_scaled_decode=True)).mean()
            for i, d in enumerate(data)]))

    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"
    date = time.strftime("%Y-%m-%d")
    if args.json:
        print(json.dumps({"images_per_second": results, "rounds": rounds, "machine": machine,
                          "date": date, "images": args.images, "size": args.size,
                          "scale": args.scale,
                          "tensorflow": tf_version, "region_decode": turbo.describe(),
                          "dct_scaled_mean_abs_difference": pixel_difference}))
        return 0
    ceiling = results["raw JPEG decode (simplejpeg)"]
    ours = results["flaxnets train transform"]
    print(f"one core, {args.images} images of ~500x375 (x{args.scale}) q90 -> "
          f"{args.size}x{args.size}, median of "
          f"{args.rounds} round(s); {machine}; {date}; TF {tf_version}; {turbo.describe()}")
    print(f"{'pipeline':50s} {'images/s':>10s} {'vs decode':>10s} {'vs flaxnets':>12s}")
    for name, rate in results.items():
        print(f"{name:50s} {rate:10.0f} {rate / ceiling:10.2f} {rate / ours:12.2f}")
    print(f"DCT-scaled decode vs default, same crops: mean absolute difference "
          f"{pixel_difference:.2f} grey levels")
    return 0


if __name__ == "__main__":
    sys.exit(main())

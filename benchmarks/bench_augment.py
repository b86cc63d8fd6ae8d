"""Train-transform throughput with RandAugment, one core: flaxnets vs TF-Vision in tf.data.

Both sides decode the same ~500x375 q90 JPEGs (made from scikit-image's sample photos), take an
Inception-style random crop (area 0.08-1, aspect 3/4-4/3), resize it bilinearly to 224x224, flip
at random and apply RandAugment(num_layers=2, magnitude=15):

* flaxnets: the library's `flaxnets.data.transforms.train_transform` (what training runs by
  default: full-resolution region decode of the crop through TurboJPEG 3, OpenCV resize,
  `cv2.flip`) with `flaxnets.data.augment.RandAugment`, one thread; and, on its own
  line, the same augmentation after a whole-image OpenCV decode + crop + resize;
* TF-Vision: `tf.image.sample_distorted_bounding_box` + `decode_and_crop_jpeg` + resize + flip +
  `official.vision.ops.augment.RandAugment` in a tf.data map, one thread (inter/intra-op and
  the private thread pool set to 1), run by `--tf-python` as a subprocess in the same run.

The timed rounds alternate between the sides (`--rounds`), and the ratio is the median of the
per-round ratios, so a shared machine's changing load affects both sides alike.

    PYTHONPATH=src python benchmarks/bench_augment.py --tf-python /path/to/tfvenv/bin/python
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZE = 224

TF_SCRIPT = r"""
import json, os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
tf.config.threading.set_inter_op_parallelism_threads(1)
tf.config.threading.set_intra_op_parallelism_threads(1)
from official.vision.ops import augment
files, count, warmup, size = json.loads(sys.argv[1])
augmenter = augment.RandAugment(num_layers=2, magnitude=15)

def transform(data):
    shape = tf.image.extract_jpeg_shape(data)
    begin, window, _ = tf.image.sample_distorted_bounding_box(
        shape, tf.zeros([0, 0, 4]), min_object_covered=0.08, aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0), max_attempts=10, use_image_if_no_bounding_boxes=True)
    y, x, _ = tf.unstack(begin)
    h, w, _ = tf.unstack(window)
    image = tf.image.decode_and_crop_jpeg(data, tf.stack([y, x, h, w]), channels=3)
    image = tf.image.resize(image, [size, size], method="bilinear")
    image = tf.image.random_flip_left_right(image)
    return augmenter.distort(tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8))

blobs = [open(f, "rb").read() for f in files]
options = tf.data.Options()
options.threading.private_threadpool_size = 1
options.threading.max_intra_op_parallelism = 1
ds = (tf.data.Dataset.from_tensor_slices(blobs).repeat()
      .map(transform, num_parallel_calls=1).with_options(options))
it = iter(ds)
for _ in range(warmup):
    next(it)
print(json.dumps({"ready": True}), flush=True)
for _ in sys.stdin:  # one timed block per line, interleaved with the parent's blocks
    start = time.perf_counter()
    for _ in range(count):
        next(it)
    print(json.dumps({"images_per_s": count / (time.perf_counter() - start)}), flush=True)
"""


def make_jpegs(folder: Path, count: int) -> list[str]:
    """Write `count` 500x375 q90 JPEGs: random crops of the scikit-image sample photos."""
    import cv2
    import numpy as np
    import skimage.data

    rng = np.random.default_rng(0)
    photos = [skimage.data.chelsea(), skimage.data.astronaut(), skimage.data.coffee(),
              skimage.data.rocket()]
    files = []
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        ch, cw = int(h * rng.uniform(0.7, 1.0)), int(w * rng.uniform(0.7, 1.0))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        image = cv2.resize(photo[y : y + ch, x : x + cw], (500, 375), interpolation=cv2.INTER_AREA)
        path = folder / f"{i:03d}.jpg"
        cv2.imwrite(str(path), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        files.append(str(path))
    return files


def random_crop_window(height, width, rng):
    """Inception-style crop: area 0.08-1, aspect 3/4-4/3, 10 attempts, else the whole image."""
    import math

    for _ in range(10):
        area = height * width * rng.uniform(0.08, 1.0)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w, h = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    return 0, 0, height, width


def opencv_transform(files: list[str]):
    """flaxnets' augmentation after a whole-image OpenCV decode + crop + resize."""
    import cv2
    import numpy as np

    from flaxnets.data.benchmark import make_augment

    cv2.setNumThreads(1)
    augment = make_augment("randaugment")
    blobs = [np.frombuffer(Path(f).read_bytes(), np.uint8) for f in files]
    rng = np.random.default_rng(0)

    def one(i):
        data = blobs[i % len(blobs)]
        image = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        y, x, h, w = random_crop_window(*image.shape[:2], rng)
        crop = image[y : y + h, x : x + w]
        image = cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            image = np.ascontiguousarray(image[:, ::-1])
        return augment(image, rng)

    return one


def library_transform(files: list[str]):
    """The same work through the library's own `train_transform` (what training runs by
    default): full-resolution region decode of the crop, OpenCV resize, `cv2.flip`,
    RandAugment."""
    import cv2
    import numpy as np

    from flaxnets.data.benchmark import make_augment
    from flaxnets.data.transforms import train_transform

    cv2.setNumThreads(1)
    augment = make_augment("randaugment")
    blobs = [Path(f).read_bytes() for f in files]
    rng = np.random.default_rng(0)

    def one(i):
        return train_transform(blobs[i % len(blobs)], rng, image_size_px=SIZE, augment=augment)

    return one


def images_per_s(one, count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        one(i)
    return count / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tf-python", required=True, help="a Python with tf-models-official")
    parser.add_argument("--images", type=int, default=300, help="timed images per side and round")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--files", type=int, default=32, help="distinct JPEG files")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved timed rounds (ours, library, TF); medians are reported")
    args = parser.parse_args()
    import statistics

    with tempfile.TemporaryDirectory() as tmp:
        files = make_jpegs(Path(tmp), args.files)
        sides = {"opencv": opencv_transform(files), "library": library_transform(files)}
        for one in sides.values():
            for i in range(args.warmup):
                one(i)
        payload = json.dumps([files, args.images, args.warmup, SIZE])
        # Rounds alternate between the sides, so load changes on a shared machine hit all of
        # them alike; ratios are taken per round.
        tf = subprocess.Popen(
            [args.tf_python, "-c", TF_SCRIPT, payload],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        )

        def tf_line() -> dict:
            for line in tf.stdout:
                if line.startswith("{"):
                    return json.loads(line)
            raise RuntimeError(tf.stderr.read()[-3000:])

        rates = {"opencv": [], "library": [], "tf": []}
        try:
            tf_line()  # TF warmed up
            for _ in range(args.rounds):
                for name, one in sides.items():
                    rates[name].append(images_per_s(one, args.images))
                tf.stdin.write("go\n")
                tf.stdin.flush()
                rates["tf"].append(tf_line()["images_per_s"])
        except RuntimeError as error:
            print(error, file=sys.stderr)
            return 1
        finally:
            tf.stdin.close()
            tf.wait()
    median = {name: statistics.median(values) for name, values in rates.items()}
    ratio = {
        name: statistics.median(a / b for a, b in zip(rates[name], rates["tf"]))
        for name in sides
    }
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}; date {datetime.date.today()}")
    print(f"decode + random crop + resize {SIZE} + flip + RandAugment(2, 15), one core, "
          f"{args.rounds} interleaved rounds of {args.images} images, {args.files} files "
          f"500x375 q90; medians over rounds")
    def per_round(name):
        return ", ".join(f"{a / b:.2f}" for a, b in zip(rates[name], rates["tf"]))

    from flaxnets.data import turbo

    print(f"flaxnets train_transform:             {median['library']:8.1f} images/s  "
          f"({turbo.describe()})")
    print(f"flaxnets, whole-image OpenCV decode:  {median['opencv']:8.1f} images/s")
    print(f"TF-Vision (tf.data):                  {median['tf']:8.1f} images/s")
    print(f"ratio train_transform / TF-Vision: {ratio['library']:.2f}x  "
          f"(per round: {per_round('library')})")
    print(f"ratio whole-image decode / TF-Vision: {ratio['opencv']:.2f}x  "
          f"(per round: {per_round('opencv')})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

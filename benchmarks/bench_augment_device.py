"""Augmentation on the host or on the device (`data.augment_on`), in one run.

* Host images/s per core of the training example the loader makes
  (`flaxnets.data.loader.train_example`: region decode, random crop, resize 224, flip, then
  RandAugment(2, 15) applied (`host`) or only its random choices drawn (`device`)), one thread,
  on ~500x375 q90 JPEGs made from scikit-image's sample photos. The timed rounds alternate
  between the two settings and the ratio is the median of the per-round ratios, so a shared
  machine's changing load affects both alike.
* The device's cost per batch: `flaxnets.data.augment_device.augment_batch` jitted on the
  current JAX backend for a batch of `--batch` images at 224 px with the same policy's draws,
  compile time apart, median of `--repeats` calls; and how many pixels differ from the host ops
  on the same images and draws.

    PYTHONPATH=src python benchmarks/bench_augment_device.py [--json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_augment import make_jpegs  # noqa: E402

MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


def host_rates(files, *, policy: str, size: int, images: int, rounds: int, warmup: int = 20) -> dict:
    """Images/s on one core with the augmentation on the host and on the device, interleaved."""
    import cv2
    import numpy as np

    from flaxnets.data.benchmark import make_augment
    from flaxnets.data.loader import train_example

    cv2.setNumThreads(1)
    blobs = [Path(f).read_bytes() for f in files]
    sides = {on: make_augment(policy, on) for on in ("host", "device")}

    def rate(augment, count, seed):
        rng = np.random.default_rng(seed)
        start = time.perf_counter()
        for i in range(count):
            train_example(blobs[i % len(blobs)], rng, image_size=size, augment=augment)
        return count / (time.perf_counter() - start)

    for augment in sides.values():
        rate(augment, warmup, 0)
    rates = {on: [] for on in sides}
    for r in range(rounds):
        for on, augment in sides.items():
            rates[on].append(rate(augment, images, r))
    ratios = [d / h for d, h in zip(rates["device"], rates["host"])]
    return {"policy": policy, "image_size": size, "images_per_round": images, "rounds": rounds,
            "host_images_per_s": statistics.median(rates["host"]),
            "device_images_per_s": statistics.median(rates["device"]),
            "ratio_device_over_host": statistics.median(ratios),
            "ratios_per_round": ratios}


def sample_images(count: int, size: int, seed: int = 0):
    """`count` uint8 size x size crops of scikit-image's sample photos."""
    import cv2
    import numpy as np
    import skimage.data

    photos = [skimage.data.chelsea(), skimage.data.astronaut(), skimage.data.coffee(), skimage.data.rocket()]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        photo = photos[i % len(photos)]
        side = int(rng.integers(min(photo.shape[:2]) // 2, min(photo.shape[:2]) + 1))
        y = int(rng.integers(photo.shape[0] - side + 1))
        x = int(rng.integers(photo.shape[1] - side + 1))
        out.append(cv2.resize(photo[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(out)


def device_cost(*, policy: str, batch: int, size: int, repeats: int, compare: bool = True) -> dict:
    """Seconds per batch of the device augmentation on JAX's default backend (compile apart), and
    the pixels where it differs from the host ops on the same images and draws."""
    import jax
    import numpy as np

    from flaxnets.data import augment as A
    from flaxnets.data import augment_device as D
    from flaxnets.data.benchmark import make_augment

    images = sample_images(batch, size)
    draws = make_augment(policy, "device")
    batch_draws = draws.draw_batch(batch, size, size, seed=0)
    table = A.erasing_noise_table(MEAN, STD)
    apply = jax.jit(lambda im, b: D.augment_batch(im, b, noise_table=table))
    device_images = jax.device_put(images)
    device_draws = jax.device_put(batch_draws)
    start = time.perf_counter()
    compiled = apply.lower(device_images, device_draws).compile()
    compile_s = time.perf_counter() - start
    out = jax.block_until_ready(compiled(device_images, device_draws))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(device_images, device_draws))
        times.append(time.perf_counter() - start)
    result = {"policy": policy, "batch": batch, "image_size": size, "backend": jax.default_backend(),
              "device_kind": jax.devices()[0].device_kind, "compile_s": compile_s,
              "seconds_per_batch": statistics.median(times), "repeats": repeats}
    if compare:
        host = make_augment(policy, "host")
        expected = np.stack([host(image, np.random.default_rng([0, i])) for i, image in enumerate(images)])
        diff = np.abs(np.asarray(out).astype(np.int16) - expected.astype(np.int16))
        result.update(pixels_differing=int(np.count_nonzero(diff)), pixels=int(diff.size),
                      max_difference=int(diff.max()))
    return result


def machine() -> str:
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    return f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores{load}".replace("  ", " ")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="randaugment", choices=["randaugment", "autoaugment"])
    parser.add_argument("--images", type=int, default=300, help="timed images per setting and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--files", type=int, default=32, help="distinct JPEG files")
    parser.add_argument("--batch", type=int, default=128, help="device batch")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5, help="timed device batches")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = make_jpegs(Path(tmp), args.files)
        host = host_rates(files, policy=args.policy, size=args.size, images=args.images, rounds=args.rounds)
    device = device_cost(policy=args.policy, batch=args.batch, size=args.size, repeats=args.repeats)
    info = {"machine": machine(), "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    if args.json:
        print(json.dumps({**info, "host": host, "device": device}, indent=2))
        return 0
    print(f"{info['machine']}; {info['date']}")
    print(f"host, one core, decode + crop + resize {args.size} + flip + {args.policy} (2, 15), "
          f"{args.rounds} interleaved rounds of {args.images} images; medians:")
    print(f"  augment_on=host:   {host['host_images_per_s']:8.1f} images/s")
    print(f"  augment_on=device: {host['device_images_per_s']:8.1f} images/s  "
          f"({host['ratio_device_over_host']:.2f}x; per round "
          f"{', '.join(f'{r:.2f}' for r in host['ratios_per_round'])})")
    print(f"device ({device['backend']}, {device['device_kind']}): {1e3 * device['seconds_per_batch']:.0f} ms "
          f"per batch of {args.batch} at {args.size} px (median of {args.repeats}; compile "
          f"{device['compile_s']:.1f} s); {device['pixels_differing']} of {device['pixels']} pixels differ "
          f"from the host ops (max {device['max_difference']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

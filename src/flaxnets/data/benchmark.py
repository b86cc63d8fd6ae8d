"""`flaxnets benchmark data`: throughput of the training transform (decode, random resized
crop, resize, flip, optional augmentation) over a folder of class folders of JPEGs."""

from __future__ import annotations

import json
import os
import platform
import time

import numpy as np

from flaxnets.config import DataConfig
from flaxnets.data import turbo
from flaxnets.data.augment import augment_from_config
from flaxnets.data.decode import DecodeError, report_bad_file, skipped_note
from flaxnets.data.loader import train_example, train_loader
from flaxnets.data.sources import open_source
from flaxnets.errors import FlaxnetsError, UsageError
from flaxnets.text import plural


#: `--augment` choices: the DataConfig fields each sets (TF-Vision's defaults for the policy).
AUGMENT_PRESETS = {
    "none": {},
    "autoaugment": {"augment": "autoaugment", "autoaugment_policy": "v0", "cutout_const": 100.0,
                    "translate_const": 250.0},
    "randaugment": {"augment": "randaugment", "randaugment_num_layers": 2, "randaugment_magnitude": 15.0},
}


def make_augment(name: str, augment_on: str = "host"):
    """The augmentation for `--augment` (None for "none"), built from a DataConfig as training
    builds it: AutoAugment policy v0, or RandAugment with 2 layers at magnitude 15; with
    `augment_on="device"` the host's share of it (`flaxnets.data.augment.DeviceDraws`)."""
    if name not in AUGMENT_PRESETS:
        raise UsageError(f"--augment {name!r}: expected one of {', '.join(AUGMENT_PRESETS)}")
    return augment_from_config(DataConfig(**AUGMENT_PRESETS[name], augment_on=augment_on))


def _decoder() -> str:
    return "turbojpeg-region" if turbo.available() else "whole-image"


def _time_loader(loader, batches: int) -> tuple[int, float]:
    """(images, seconds) of `batches` batches of `loader` after its first (start-up excluded);
    closes it."""
    images = batches * loader.local_batch_size
    next(loader)
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)
    seconds = time.perf_counter() - start
    loader.close()
    return images, seconds


def measure(path, *, workers: int, batches: int, batch_size: int, image_size: int,
            crop: str = "tf_vision", augment=None, config=None, prep=None) -> dict:
    """Images per second of the training transform. With `workers` = 0 one process runs the
    transform in a loop (one core); otherwise the Grain loader with that many worker processes,
    timed after its first batch (worker start-up excluded). With `config` (a recipe's `Config`)
    and `prep` (its resolved preprocessing), its own training loader (`train_loader_from_config`:
    every data.* key as training reads it, `workers` in place of data.workers), in-process or with
    workers; `image_size` and `crop` are then the recipe's and `augment` is unused."""
    source = open_source(path, "train")
    images = batches * batch_size
    bad: set[int] = set()
    if config is not None:
        import dataclasses

        from flaxnets.data.loader import train_loader_from_config

        image_size, crop = prep["image_size"], prep["crop"]
        data = dataclasses.replace(config.data, workers=workers)
        loader = train_loader_from_config(data, prep, source, global_batch_size=min(batch_size, len(source)),
                                          seed=config.seed)
        images, seconds = _time_loader(loader, batches)
    elif workers == 0:
        rng = np.random.default_rng(0)
        count = len(source)

        def transform(i):
            # As in training: an undecodable file is reported once and the next one taken.
            for attempt in range(count):
                index = (i + attempt) % count
                if index in bad:
                    continue
                try:
                    return train_example(source[index][0], rng, image_size=image_size, crop=crop,
                                         augment=augment)
                except DecodeError as e:
                    report_bad_file(source.name(index), str(e))
                    bad.add(index)
            raise FlaxnetsError(f"{path}: none of its {plural(count, 'image')} could be decoded")

        transform(0)
        start = time.perf_counter()
        for i in range(images):
            transform(i)
        seconds = time.perf_counter() - start
    else:
        loader = train_loader(source, image_size=image_size, global_batch_size=min(batch_size, len(source)),
                              seed=0, crop=crop, augment=augment, workers=workers)
        images, seconds = _time_loader(loader, batches)
    per_second = images / seconds
    return {
        "images_per_second": per_second,
        "images_per_second_per_worker": per_second / max(workers, 1),
        "workers": workers,
        "images": images,
        # Undecodable files met (in-process runs; with workers each worker reports its own).
        "skipped": len(bad),
        "seconds": seconds,
        "image_size": image_size,
        "crop": crop,
        "decoder": _decoder(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d"),
    }


def run(args, config=None, prep=None) -> int:
    """The `benchmark data` sub-command; with `--recipe`, `config` is that recipe with `--set`
    applied and `prep` its resolved preprocessing (the commands layer reads them)."""
    recipe = getattr(args, "recipe", None)
    overrides = getattr(args, "overrides", None) or []
    if recipe is None:
        if overrides:
            raise UsageError("--set goes with --recipe NAME (the recipe whose data.* keys it changes)")
        args.augment = args.augment or "none"
        args.augment_on = getattr(args, "augment_on", None) or "host"
        args.image_size = 224 if args.image_size is None else args.image_size
        args.crop = args.crop or "tf_vision"
    else:
        for flag, value in (("--augment", args.augment), ("--augment-on", getattr(args, "augment_on", None)),
                            ("--crop", args.crop), ("--image-size", args.image_size)):
            if value is not None:
                key = {"--augment-on": "augment_on", "--image-size": "image_size"}.get(flag, flag[2:])
                raise UsageError(f"{flag} with --recipe {recipe}: the recipe's data.{key} is timed; "
                                 f"change it with --set data.{key}=...")
    for flag, value, least in (("--workers", args.workers, 0), ("--batches", args.batches, 1),
                               ("--batch-size", args.batch_size, 1), ("--image-size", 1 if args.image_size is None else args.image_size, 1)):
        if value < least:
            raise UsageError(f"{flag} {value}: expected at least {least}")
    if recipe is not None:
        result = measure(args.dir, workers=args.workers, batches=args.batches, batch_size=args.batch_size,
                         image_size=0, config=config, prep=prep)
        args.image_size = result["image_size"]
        args.augment = config.data.augment
        args.augment_on = config.data.augment_on
        result["recipe"] = recipe
        result["augment"] = args.augment
        result["augment_on"] = args.augment_on
    else:
        augment = make_augment(args.augment, args.augment_on)
        result = measure(args.dir, workers=args.workers, batches=args.batches,
                         batch_size=args.batch_size, image_size=args.image_size, crop=args.crop,
                         augment=augment)
        result["augment"] = args.augment
        result["augment_on"] = args.augment_on
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['images_per_second']:.1f} images/s with {plural(args.workers, 'worker')} "
              f"({result['images_per_second_per_worker']:.1f} per worker; "
              + (f"recipe {recipe}, {result['crop']} crop, " if recipe else "")
              + f"augment {args.augment} on the "
              f"{result['augment_on']}, "
              f"{args.image_size}px, {result['decoder']} JPEG decode, {plural(result['images'], 'image')} in "
              f"{result['seconds']:.2f} s)")
    if result["skipped"]:
        print(f"flaxnets benchmark data: {skipped_note(result['skipped'])} (above), as training skips them")
    return 0

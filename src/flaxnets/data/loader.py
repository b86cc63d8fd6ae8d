"""Training and evaluation input pipelines on Grain (no TensorFlow).

Training order. For epoch `e`, the global order is a permutation of all N examples drawn from
`(seed, e)`. Global batch `s` of the epoch is positions `[s*G, (s+1)*G)` of that order, and
process `p` of `P` takes its slice `[s*G + p*L, s*G + (p+1)*L)` (L = G / P). So the processes
read disjoint examples, the global batch does not depend on the process count, and the last
`N mod G` examples of each epoch's order are dropped. Random crops and flips come from a
generator seeded by `(seed, epoch, example index)`, so batches depend only on the seed and the
step, not on the number of worker processes: the iterator state is just the step, and a
resumed run gets exactly the batches it would have got (even with other worker or process
counts).

Bad files in training: an example that cannot be decoded is replaced by the next decodable
example of the epoch's order (decoded with its own random generator). That keeps every batch
full and every process at the same step count, which SPMD needs; the substitute appears
twice in that epoch. Each bad path is named once per process, on one stderr line
(`flaxnets.data.decode.report_bad_file`, the policy every command that reads images shares).

Evaluation visits examples in index order: batch `b` of process `p` holds positions
`b*G + p*L + i`; positions past N are padding with `mask` False. Every process yields
`ceil(N / G)` batches, every example is in exactly one batch of one process. An undecodable
evaluation file gets `mask` False too, and is counted in `coverage()`.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from flaxnets.config import DataConfig
from flaxnets.data.augment import DeviceDraws, augment_from_config
from flaxnets.data.decode import DecodeError, report_bad_file
from flaxnets.data.sources import open_source
from flaxnets.data.transforms import eval_transform, train_transform
from flaxnets.errors import FlaxnetsError
from flaxnets.text import plural

# Substitutes tried for an undecodable training example before giving up.
_MAX_SUBSTITUTES = 1000
# Undecodable indices one training example carries back to the main process (a fixed-size
# array, so examples batch; a longer run of bad files is still counted, each at its own position).
_SKIPPED_PER_EXAMPLE = 4


def _ensure_absl_flags() -> None:
    # Grain's worker processes read absl flags, which raise unless parsed first.
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS(sys.argv[:1])


def _check_batch(global_batch_size: int, process_count: int, device_count: int) -> int:
    if global_batch_size <= 0 or global_batch_size % process_count:
        raise FlaxnetsError(
            f"global batch size {global_batch_size}: expected a positive multiple of the "
            f"process count {process_count}"
        )
    local = global_batch_size // process_count
    if local % device_count:
        raise FlaxnetsError(
            f"local batch size {local} (global {global_batch_size} / {plural(process_count, 'process')}): "
            f"expected a multiple of the local device count {device_count}"
        )
    return local


def _pipeline(dataset, workers: int):
    """Iterator over a MapDataset whose elements are whole batches.

    With `workers` > 0, Grain worker processes each build whole batches with one thread
    (so a worker is about one core) and the batches are interleaved back in order; with 0,
    two threads of this process build them. Buffers are a few batches, not Grain's default
    500 elements (which would be 500 batches here).
    """
    import grain

    if workers > 0:
        _ensure_absl_flags()
        read = grain.ReadOptions(num_threads=1, prefetch_buffer_size=1)
        options = grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=2)
        return iter(dataset.to_iter_dataset(read).mp_prefetch(options))
    return iter(dataset.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=2)))


def train_example(data: bytes, rng: np.random.Generator, *, image_size: int, augment, **options) -> dict:
    """{"image": uint8 HWC} of one encoded training image (`train_transform` with `options`).
    With a `DeviceDraws` as `augment`, the same generator then draws its choices where the host
    augmentation would, after the crop and flip, and the example carries them."""
    draws = augment if isinstance(augment, DeviceDraws) else None
    image = train_transform(data, rng, image_size_px=image_size, augment=None if draws else augment,
                            **options)
    example = {"image": image}
    if draws is not None:
        example.update(draws(image.shape[0], image.shape[1], rng))
    return example


class _TrainExample:
    """Element k of the process's infinite stream -> one transformed example (picklable).

    `stages`: (end step or None, image size, augment) of each stage in order, a stage covering
    the steps before its end step (the last one's None: every step after); the example of step
    `k // local_batch_size` takes its stage's. `options`: keyword arguments of `train_transform`
    (crop flavour, interpolation, ...)."""

    def __init__(self, source, *, seed, stages, global_batch_size, local_batch_size,
                 process_index, steps_per_epoch, options):
        self.source = source
        self.num_examples = len(source)
        self.seed = seed
        self.stages = tuple(stages)
        self.global_batch_size = global_batch_size
        self.local_batch_size = local_batch_size
        self.process_index = process_index
        self.steps_per_epoch = steps_per_epoch
        self.options = options
        self._order = (None, None)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_order"] = (None, None)
        return state

    def order(self, epoch: int) -> np.ndarray:
        """The global example order of `epoch`."""
        if self._order[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._order = (epoch, rng.permutation(self.num_examples))
        return self._order[1]

    def position(self, k: int) -> tuple[int, int]:
        """(epoch, position in the epoch's order) of the process's k-th example."""
        step, i = divmod(k, self.local_batch_size)
        epoch, s = divmod(step, self.steps_per_epoch)
        return epoch, s * self.global_batch_size + self.process_index * self.local_batch_size + i

    def stage(self, step: int) -> tuple[int, object]:
        """(image size, augment) of training step `step` (counted from 0)."""
        for end, size, augment in self.stages:
            if end is None or step < end:
                return size, augment
        return self.stages[-1][1:]

    def __call__(self, k: int) -> dict:
        epoch, position = self.position(int(k))
        image_size, augment = self.stage(int(k) // self.local_batch_size)
        order = self.order(epoch)
        skipped = np.full((_SKIPPED_PER_EXAMPLE,), -1, np.int64)
        for attempt in range(min(_MAX_SUBSTITUTES, self.num_examples)):
            index = int(order[(position + attempt) % self.num_examples])
            data, label = self.source[index]
            rng = np.random.default_rng([self.seed, epoch, index])
            try:
                example = train_example(data, rng, image_size=image_size, augment=augment, **self.options)
            except DecodeError as e:
                report_bad_file(self.source.name(index), str(e))
                if attempt < _SKIPPED_PER_EXAMPLE:
                    skipped[attempt] = index
                continue
            example["label"] = np.int32(label)
            example["skipped"] = skipped
            return example
        raise FlaxnetsError(f"no decodable image among {_MAX_SUBSTITUTES} training examples")


class TrainIterator:
    """Infinite iterator of training batches {"image": uint8 [L, H, W, 3], "label": int32 [L]}.

    `get_state()` returns a small JSON-serialisable dict; `set_state(state)` makes the next
    batch the one that followed when the state was taken. `steps_per_epoch` = floor(N / G).
    `skipped()` names the undecodable files this process's batches have skipped so far (the
    worker processes that decode them report each on stderr; this collects them for one count).
    """

    def __init__(self, source, *, stages, global_batch_size, seed, process_index,
                 process_count, workers, start_epoch, device_count, transform_options):
        self.local_batch_size = _check_batch(global_batch_size, process_count, device_count)
        if not 0 <= process_index < process_count:
            raise FlaxnetsError(f"process index {process_index}: expected 0..{process_count - 1}")
        self.source = source
        self.num_examples = len(source)
        self.global_batch_size = global_batch_size
        self.steps_per_epoch = self.num_examples // global_batch_size
        if self.steps_per_epoch == 0:
            raise FlaxnetsError(
                f"global batch size {global_batch_size} is larger than the {self.num_examples} "
                "training examples"
            )
        self.seed = int(seed)
        self.workers = workers
        self.process_index = process_index
        self.process_count = process_count
        self._example = _TrainExample(
            source, seed=self.seed, stages=stages,
            global_batch_size=global_batch_size, local_batch_size=self.local_batch_size,
            process_index=process_index, steps_per_epoch=self.steps_per_epoch,
            options=dict(transform_options))
        self.step = start_epoch * self.steps_per_epoch
        self._iterator = None
        self._skipped: set[int] = set()

    @property
    def epoch(self) -> int:
        """The epoch of the next batch."""
        return self.step // self.steps_per_epoch

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self._iterator is None:
            import grain

            local = self.local_batch_size
            # Far more epochs than any run; MapDataset elements are computed lazily.
            end = (self.step + 2**40) * local
            dataset = grain.MapDataset.range(self.step * local, end).map(self._example)
            self._iterator = _pipeline(dataset.batch(local, drop_remainder=True), self.workers)
        batch = next(self._iterator)
        self.step += 1
        skipped = batch.pop("skipped")
        self._skipped.update(int(i) for i in skipped[skipped >= 0])
        return batch

    def skipped(self) -> list[str]:
        """The undecodable files skipped by the batches drawn so far, by name."""
        return sorted(self.source.name(i) for i in self._skipped)

    def get_state(self) -> dict:
        """The position in the stream, JSON-serialisable."""
        return {"step": self.step, "seed": self.seed, "num_examples": self.num_examples,
                "global_batch_size": self.global_batch_size}

    def set_state(self, state: dict) -> None:
        """Continue from a `get_state()` result (the seed, data size and batch size must match)."""
        for key in ("seed", "num_examples", "global_batch_size"):
            if int(state[key]) != getattr(self, key):
                raise FlaxnetsError(
                    f"data iterator state has {key}={state[key]}, this run has "
                    f"{getattr(self, key)}; resume with the same data, seed and batch size"
                )
        self.step = int(state["step"])
        self.close()

    def close(self) -> None:
        """Stop the worker processes (a later `next` starts new ones at the current step)."""
        if self._iterator is not None and hasattr(self._iterator, "close"):
            self._iterator.close()
        self._iterator = None


def train_loader(
    path,
    *,
    image_size: int,
    global_batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    crop: str = "tf_vision",
    interpolation: str | None = None,
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
    workers: int = 0,
    start_epoch: int = 0,
    device_count: int = 1,
    dct_scaled_decode: bool = False,
    split: str = "train",
    area_range: tuple[float, float] | None = None,
    aspect_ratio_range: tuple[float, float] | None = None,
    flip: bool = True,
    fallback_crop_fraction: float | None = None,
    inception_fast_mode: bool = True,
    stages: tuple | None = None,
) -> TrainIterator:
    """Training batches for this process (see the module docstring for order and sharding).

    `path`: a data set folder (or an already opened source); `crop`: the reference flavour,
    "tf_vision", "tf_tpu" or "inception", and `interpolation` its resize method (None: the
    flavour's), `area_range`, `aspect_ratio_range` (None: the flavour's), `flip`,
    `fallback_crop_fraction`, `inception_fast_mode`, `dct_scaled_decode` (opt-in reduced-scale
    JPEG decode): see `flaxnets.data.transforms.train_transform`; `augment`: a callable (uint8
    HWC image, numpy Generator) -> uint8 HWC applied after crop and flip, e.g. from
    `flaxnets.data.augment`, or a `flaxnets.data.augment.DeviceDraws`, whose draws each
    example then carries ("augment_ops", "augment_args", "erase_boxes") for the train step to
    apply; `workers`: Grain decoding processes (0: threads in this process);
    `device_count`: local devices the local batch must divide over. `stages` (progressive
    learning): (end step, image size, augment) of each stage, each covering the steps (from 0)
    before its end step, the last end None; they replace `image_size` and `augment`.
    Returns a `TrainIterator` with `steps_per_epoch`, `get_state()` and `set_state()`.
    """
    source = open_source(path, split) if isinstance(path, (str, os.PathLike)) else path
    options = {
        "crop": crop, "interpolation": interpolation, "dct_scaled_decode": bool(dct_scaled_decode),
        "area_range": None if area_range is None else tuple(area_range),
        "aspect_ratio_range": None if aspect_ratio_range is None else tuple(aspect_ratio_range),
        "flip": bool(flip), "fallback_crop_fraction": fallback_crop_fraction,
        "inception_fast_mode": bool(inception_fast_mode),
    }
    if stages is None:
        stages = ((None, image_size, augment),)
    return TrainIterator(
        source, stages=stages, global_batch_size=global_batch_size, seed=seed,
        process_index=process_index, process_count=process_count, workers=workers, start_epoch=start_epoch, device_count=device_count,
        transform_options=options)


class _EvalBatch:
    """Batch index -> this process's padded evaluation batch (picklable)."""

    def __init__(self, source, *, image_size, crop_fraction, interpolation, crop, global_batch_size,
                 local_batch_size, process_index):
        self.crop = crop
        self.source = source
        self.num_examples = len(source)
        self.image_size = image_size
        self.crop_fraction = crop_fraction
        self.interpolation = interpolation
        self.global_batch_size = global_batch_size
        self.local_batch_size = local_batch_size
        self.process_index = process_index

    def __call__(self, batch_index: int) -> dict:
        size, local = self.image_size, self.local_batch_size
        images = np.zeros((local, size, size, 3), np.uint8)
        labels = np.zeros((local,), np.int32)
        mask = np.zeros((local,), bool)
        skipped = np.full((local,), -1, np.int64)
        start = int(batch_index) * self.global_batch_size + self.process_index * local
        for i in range(local):
            position = start + i
            if position >= self.num_examples:
                break
            data, label = self.source[position]
            try:
                images[i] = eval_transform(data, image_size_px=size, crop_fraction=self.crop_fraction,
                                           interpolation=self.interpolation, crop=self.crop)
            except DecodeError as e:
                report_bad_file(self.source.name(position), str(e))
                skipped[i] = position
                continue
            labels[i] = label
            mask[i] = True
        return {"image": images, "label": labels, "mask": mask, "skipped": skipped}


class EvalLoader:
    """Evaluation batches {"image", "label", "mask"}; iterate it once per evaluation.

    `num_examples` (all processes), `num_batches` (the same on every process) and, after a
    pass, `coverage()` with this process's evaluated and skipped counts.
    """

    def __init__(self, source, *, image_size, crop_fraction, interpolation, global_batch_size,
                 process_index, process_count, workers, device_count, crop="tf_vision"):
        self.local_batch_size = _check_batch(global_batch_size, process_count, device_count)
        if not 0 <= process_index < process_count:
            raise FlaxnetsError(f"process index {process_index}: expected 0..{process_count - 1}")
        self.source = source
        self.num_examples = len(source)
        self.global_batch_size = global_batch_size
        self.num_batches = math.ceil(self.num_examples / global_batch_size)
        self.workers = workers
        self._batch = _EvalBatch(
            source, image_size=image_size, crop_fraction=crop_fraction,
            interpolation=interpolation, crop=crop, global_batch_size=global_batch_size,
            local_batch_size=self.local_batch_size, process_index=process_index)
        self._evaluated = 0
        self._skipped: list[int] = []

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self):
        import grain

        self._evaluated, self._skipped = 0, []
        dataset = grain.MapDataset.range(self.num_batches).map(self._batch)
        iterator = _pipeline(dataset, self.workers)
        try:
            for batch in iterator:
                skipped = batch.pop("skipped")
                self._skipped.extend(int(i) for i in skipped[skipped >= 0])
                self._evaluated += int(batch["mask"].sum())
                yield batch
        finally:
            if hasattr(iterator, "close"):
                iterator.close()

    def coverage(self) -> dict:
        """This process's share of the last pass: examples evaluated and skipped (with paths)."""
        return {
            "num_examples": self.num_examples,
            "num_evaluated": self._evaluated,
            "num_skipped": len(self._skipped),
            "skipped": [self.source.name(i) for i in self._skipped],
        }


def eval_loader(
    path,
    *,
    image_size: int,
    crop_fraction: float,
    interpolation: str,
    global_batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
    workers: int = 0,
    device_count: int = 1,
    split: str = "val",
    crop: str = "tf_vision",
) -> EvalLoader:
    """Evaluation batches for this process: every example exactly once across processes, the
    last batches padded with `mask` False, `num_batches` equal on every process.

    Images are centre-cropped to `crop_fraction` of the shorter side (image_size /
    (image_size + 32) for TF-TPU EfficientNet, 0.875 for 224/256) with the arithmetic of the
    `crop` flavour's reference and resized with `interpolation` ("bilinear", "bicubic", "area",
    "nearest") in that reference's convention (`flaxnets.data.transforms.eval_transform`).
    `device_count`: local devices the local batch must divide over.
    """
    source = open_source(path, split) if isinstance(path, (str, os.PathLike)) else path
    return EvalLoader(
        source, image_size=image_size, crop_fraction=crop_fraction, interpolation=interpolation,
        global_batch_size=global_batch_size, process_index=process_index,
        process_count=process_count, workers=workers, device_count=device_count, crop=crop)


# ---------------------------------------------------------------------------------------------
# From a config: the DataConfig and the run's resolved preprocessing travel whole


def _options(data: DataConfig, prep: Mapping) -> dict:
    """The one reader of the loaders' `data.*` keys. `prep` is the run's resolved preprocessing
    (`flaxnets.train.from_config.resolve_preprocessing`, the one reader of data.image_size,
    data.crop, data.eval_crop_fraction, data.interpolation, data.mean and data.std, which need
    the model's defaults); the keys read here need nothing but the config. The augmentation's
    keys are `flaxnets.data.augment.augment_from_config`'s."""
    return {
        "workers": data.workers,
        "train": {
            "crop": prep["crop"], "interpolation": prep["train_interpolation"],
            "area_range": data.crop_area_range, "aspect_ratio_range": data.crop_aspect_range,
            "flip": data.flip, "inception_fast_mode": data.inception_fast_mode,
            "dct_scaled_decode": data.dct_scaled_decode,
        },
        "eval": {"crop": prep["crop"], "crop_fraction": prep["crop_fraction"], "interpolation": prep["interpolation"]},
    }


def train_loader_from_config(data: DataConfig, prep: Mapping, path, *, global_batch_size: int, seed: int,
                             process_index: int = 0, process_count: int = 1, device_count: int = 1,
                             split: str = "train", stages: Sequence[tuple[int, DataConfig, int]] = ()
                             ) -> TrainIterator:
    """`train_loader` of `path` as `data` (a `DataConfig`) and `prep` (its resolved preprocessing)
    ask: image size, crop flavour and its settings, interpolation, augmentation (with RandomErasing
    noise from `prep`'s mean/std), workers. The run's own counts (batch, seed, process and device
    numbers) are the caller's. `stages` (progressive learning,
    `flaxnets.train.progressive.stage_plan`): (end step, the stage's DataConfig, its image size)
    of each stage; each stage's augmentation is its DataConfig's, the rest is `data`'s."""
    options = _options(data, prep)
    per_stage = None
    if stages:
        per_stage = tuple((None if i == len(stages) - 1 else int(end), int(size),
                           augment_from_config(stage_data, mean=prep["mean"], std=prep["std"]))
                          for i, (end, stage_data, size) in enumerate(stages))
    return train_loader(
        path, image_size=prep["image_size"], global_batch_size=global_batch_size, seed=seed,
        process_index=process_index, process_count=process_count, device_count=device_count,
        augment=augment_from_config(data, mean=prep["mean"], std=prep["std"]), workers=options["workers"],
        split=split, stages=per_stage, **options["train"])


def eval_loader_from_config(data: DataConfig, prep: Mapping, path, *, global_batch_size: int,
                            process_index: int = 0, process_count: int = 1, device_count: int = 1,
                            split: str = "val") -> EvalLoader:
    """`eval_loader` of `path` as `data` and `prep` ask: the run's image size, centre crop (its
    flavour's arithmetic and fraction) and interpolation, and `data.workers`; training's
    evaluation and `flaxnets eval --workdir` both come here."""
    options = _options(data, prep)
    return eval_loader(path, image_size=prep["image_size"], global_batch_size=global_batch_size,
                       process_index=process_index, process_count=process_count, workers=options["workers"],
                       device_count=device_count, split=split, **options["eval"])

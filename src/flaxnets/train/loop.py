"""The training loop: one linear function, read top to bottom, in banner-commented sections.

Resuming is the default: if WORKDIR/checkpoints holds a checkpoint, the run continues from it
(step, weights, BatchNorm statistics, optimizer, EMA, RNG and every process's data position), so
an interrupted run produces the same losses and weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

from flaxnets.errors import FlaxnetsError

CONFIG_FILE = "config.json"
#: The training data's class names in label order (folder names, or a records manifest's map),
#: so `flaxnets predict --workdir` can name the classes of a run that is not ImageNet.
CLASS_NAMES_FILE = "class_names.json"


def _config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def check_workdir(workdir) -> Path:
    """Create `workdir` if needed; a one-line error if it cannot be written."""
    workdir = Path(workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise FlaxnetsError(f"--workdir {str(workdir)!r} is not writable: {e.strerror or e}") from None
    return workdir


def _sync_config(workdir: Path, config, has_checkpoint: bool, allow_config_change: bool, write: bool):
    path = workdir / CONFIG_FILE
    new = config.to_dict()
    if has_checkpoint and path.exists():
        old = json.loads(path.read_text())
        changes = _config_differences(old, new)
        if changes and not allow_config_change:
            shown = "; ".join(changes[:3]) + ("; ..." if len(changes) > 3 else "")
            raise FlaxnetsError(
                f"{workdir} holds a run with a different config ({shown}); "
                "use another --workdir, or --allow-config-change to resume anyway")
    if write:
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(new, indent=2) + "\n")
        os.replace(tmp, path)


def _write_class_names(workdir: Path, source) -> None:
    names = getattr(source, "class_names", None)
    if names:
        tmp = workdir / (CLASS_NAMES_FILE + ".tmp")
        tmp.write_text(json.dumps([str(n) for n in names]) + "\n")
        os.replace(tmp, workdir / CLASS_NAMES_FILE)


class _Preemption:
    """Turns SIGTERM into a request to save and stop at the next step boundary."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def resolve_preprocessing(config) -> dict:
    """Resolution, eval crop fraction, interpolation and mean/std: the config's, else the model's."""
    from flaxnets.models import get_spec

    spec = get_spec(config.model.name)
    d = config.data
    return {
        "image_size": d.image_size or spec.resolution,
        "crop_fraction": d.eval_crop_fraction or spec.crop_fraction,
        "interpolation": d.interpolation or spec.interpolation,
        "mean": tuple(d.mean or spec.mean),
        "std": tuple(d.std or spec.std),
    }


def _augment_fn(config, mean, std):
    """The host-side augmentation the recipe asks for, applied after crop and flip (or None)."""
    from flaxnets.data import augment

    d = config.data
    ops = []
    if d.augment == "autoaugment":
        ops.append(augment.AutoAugment(d.autoaugment_policy, cutout_const=d.cutout_const,
                                       translate_const=d.translate_const))
    elif d.augment == "randaugment":
        ops.append(augment.RandAugment(
            num_layers=d.randaugment_num_layers, magnitude=d.randaugment_magnitude,
            magnitude_std=d.randaugment_magnitude_std, prob_to_apply=d.randaugment_prob_to_apply,
            exclude_ops=list(d.randaugment_exclude_ops) or None, cutout_const=d.cutout_const,
            translate_const=d.translate_const))
    if d.random_erasing > 0:
        ops.append(augment.RandomErasing(probability=d.random_erasing, mean=mean, std=std))
    if not ops:
        return None
    if len(ops) == 1:
        return ops[0]
    return _Chain(ops)


def _mix_fn(config):
    """Batch-level Mixup / CutMix on the device when the recipe sets an alpha (else None)."""
    d = config.data
    if not d.mixup_alpha and not d.cutmix_alpha:
        return None
    import functools

    from flaxnets.data.mix import mixup_or_cutmix

    return functools.partial(mixup_or_cutmix, mixup_alpha=d.mixup_alpha, cutmix_alpha=d.cutmix_alpha,
                             prob=d.mix_prob, switch_prob=d.mix_switch_prob)


class _Chain:
    """Apply host-side augmentations in order (picklable for loader worker processes)."""

    def __init__(self, ops):
        self.ops = ops

    def __call__(self, image, rng):
        for op in self.ops:
            image = op(image, rng)
        return image


def train_and_evaluate(config, *, data_dir, workdir, init_from=None, allow_config_change: bool = False,
                       stop_after_steps: int | None = None, stream=None) -> dict:
    """Train `config` on `data_dir` (train/ and val/ splits) into `workdir`; returns the last
    evaluation's metrics plus "step" and "preempted".

    `stop_after_steps` stops (with a checkpoint) after that optimizer step, as an interruption
    would; the result then has evaluation metrics only if that step was an evaluation step.
    SIGTERM saves a checkpoint and returns with "preempted" True. A non-finite loss raises
    FlaxnetsError naming the step; no checkpoint holding it is written.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from flaxnets import data as data_lib
    from flaxnets.models import create_model, param_kinds
    from flaxnets.train import parallel
    from flaxnets.train.checkpoint import Checkpointer, abstract_like
    from flaxnets.train.evaluate import evaluate_state
    from flaxnets.train.losses import cross_entropy_loss
    from flaxnets.train.metrics import MetricWriter
    from flaxnets.train.optim import build_optimizer
    from flaxnets.train.progress import ProgressBar
    from flaxnets.train.schedules import build_schedule, config_steps_per_epoch, total_steps
    from flaxnets.train.state import create_train_state
    from flaxnets.train.step import make_eval_step, make_train_step

    config = config.validate()
    workdir = check_workdir(workdir)
    is_main = jax.process_index() == 0
    stream = sys.stderr if stream is None else stream

    # ---------------------------------------------------------------- Mesh ----
    mesh = parallel.make_mesh()
    global_batch = config.train.global_batch_size
    accum = config.train.grad_accum_steps
    parallel.check_batch_size(global_batch, mesh.devices.size, accum)
    local_devices = jax.local_device_count()

    # --------------------------------------------------------------- Input ----
    prep = resolve_preprocessing(config)
    train_path = config.data.train_source or data_dir
    eval_path = config.data.eval_source or data_dir
    train_iter = data_lib.train_loader(
        train_path, image_size=prep["image_size"], global_batch_size=global_batch, seed=config.seed,
        process_index=jax.process_index(), process_count=jax.process_count(), crop=config.data.crop,
        interpolation=config.data.interpolation,  # None: the crop flavour's, not the model's
        augment=_augment_fn(config, prep["mean"], prep["std"]), workers=config.data.workers, device_count=local_devices,
        area_range=config.data.crop_area_range, aspect_ratio_range=config.data.crop_aspect_range,
        flip=config.data.flip, inception_fast_mode=config.data.inception_fast_mode,
        dct_scaled_decode=config.data.dct_scaled_decode)
    # Padding is masked out, so the eval batch may round up to a multiple of the device count.
    eval_batch = -(-config.eval.batch_size // mesh.devices.size) * mesh.devices.size
    eval_iter = data_lib.eval_loader(
        eval_path, image_size=prep["image_size"], crop_fraction=prep["crop_fraction"],
        interpolation=prep["interpolation"], global_batch_size=eval_batch,
        process_index=jax.process_index(), process_count=jax.process_count(),
        workers=config.data.workers, device_count=local_devices, crop=config.data.crop)
    num_train = config.data.num_train_examples or train_iter.num_examples
    steps_per_epoch = config_steps_per_epoch(config, num_train)
    num_steps = total_steps(config, num_train)

    # --------------------------------------------------------------- Model ----
    model_kwargs = config.model.overrides()
    if "dtype" in model_kwargs:
        model_kwargs["dtype"] = jnp.dtype(model_kwargs["dtype"])
    model = create_model(config.model.name, num_classes=config.model.num_classes,
                         rngs=nnx.Rngs(config.seed), **model_kwargs)

    # ----------------------------------------------------------- Optimizer ----
    schedule = build_schedule(config, num_train)
    tx = build_optimizer(config, param_kinds(model), num_train, schedule)

    # ------------------------------------------------- Checkpoint / resume ----
    ckpt = Checkpointer(str(workdir), keep=config.checkpoint.keep, keep_best=config.checkpoint.keep_best)
    start_step = ckpt.latest_step()
    _sync_config(workdir, config, start_step is not None, allow_config_change, write=is_main)
    if is_main:
        _write_class_names(workdir, train_iter.source)
    if start_step is None and init_from is not None:
        from flaxnets import load_weights

        load_weights(model, init_from, skip_classifier=config.model.num_classes != 1000)
    graphdef, state = create_train_state(
        model, tx, seed=config.seed, ema=config.ema.decay is not None,
        ema_batch_stats=config.ema.include_batch_stats)
    del model
    state = parallel.replicate(jax.device_get(state), mesh)
    if start_step is not None:
        def warn(line):
            if is_main:
                print(line, file=stream, flush=True)

        start_step, state, data_state = ckpt.restore_newest_readable(abstract_like(state), warn=warn)
        if data_state is not None:
            train_iter.set_state(data_state)
    start_step = int(start_step or 0)
    writer = MetricWriter(workdir, active=is_main, resume_step=start_step if start_step else None)

    # --------------------------------------------------------------- Steps ----
    def loss_fn(logits, labels):
        return cross_entropy_loss(logits, labels, config.loss.label_smoothing).mean()

    train_step = make_train_step(
        graphdef, tx, loss_fn=loss_fn, mean=prep["mean"], std=prep["std"], grad_accum_steps=accum,
        ema_decay=config.ema.decay, ema_dynamic_decay=config.ema.dynamic_decay,
        ema_start_step=config.ema.start_step,
        learning_rate_fn=schedule, mix_fn=_mix_fn(config), num_classes=config.model.num_classes, mesh=mesh)
    eval_step = make_eval_step(graphdef, mean=prep["mean"], std=prep["std"], mesh=mesh)

    if config.eval.every_steps:
        eval_every = config.eval.every_steps
    elif config.eval.every_epochs:
        eval_every = max(1, int(round(config.eval.every_epochs * steps_per_epoch)))
    else:
        eval_every = num_steps
    save_every = config.checkpoint.every_steps or eval_every
    log_every = max(1, config.log.every_steps)
    last_step = num_steps if stop_after_steps is None else min(num_steps, stop_after_steps)

    # ---------------------------------------------------------------- Loop ----
    pending = []  # (step, device metrics) not yet checked and logged
    interval_start = time.perf_counter()
    last_eval: dict = {}
    last_good = start_step
    progress = ProgressBar(num_steps, start_step=start_step, images_per_step=global_batch,
                           stream=stream, active=is_main)

    def flush(step):
        """Check the pending steps for NaN/Inf and log their mean; returns the line's metrics."""
        nonlocal pending, interval_start
        if not pending:
            return {}
        values = jax.device_get([m for _, m in pending])
        for (s, _), m in zip(pending, values):
            if not bool(m["finite"]):
                ckpt.close()
                kept = f"the last good checkpoint (step {last_good}) is kept" if last_good else "no checkpoint was saved"
                raise FlaxnetsError(
                    f"training diverged: train_loss={float(m['train_loss'])} at step {s} "
                    f"(non-finite loss or weights); stopping, {kept}")
        elapsed = time.perf_counter() - interval_start
        line = {
            "epoch": round(step / steps_per_epoch, 4),
            "train_loss": float(np.mean([m["train_loss"] for m in values])),
            "train_top1": float(np.mean([m["train_top1"] for m in values])),
            "grad_norm": float(values[-1]["grad_norm"]),
            "learning_rate": float(values[-1]["learning_rate"]),
            "images_per_second": len(values) * global_batch / elapsed if elapsed > 0 else 0.0,
        }
        pending, interval_start = [], time.perf_counter()
        return line

    preempted = False
    step = start_step
    with _Preemption() as preemption:
        while step < last_step:
            batch = train_iter.__next__()
            state, metrics = train_step(state, parallel.shard_batch(batch, mesh))
            step += 1
            pending.append((step, metrics))
            if jax.process_count() > 1:
                preemption.requested = preemption.requested or ckpt.manager.reached_preemption(step)
            stopping = preemption.requested or step == last_step
            is_eval = step % eval_every == 0 or step == num_steps
            is_save = is_eval or stopping or step % save_every == 0
            line = {}
            if is_save or stopping or step % log_every == 0:
                line = flush(step)
            if is_eval:
                last_eval = evaluate_state(eval_step, state, iter(eval_iter), mesh)
                line.update(last_eval)
                if "epoch" not in line:
                    line["epoch"] = round(step / steps_per_epoch, 4)
                progress.message(
                    f"step {step}: eval_top1 {last_eval['eval_top1']:.4f} top5 {last_eval['eval_top5']:.4f}"
                    + (f" ema_top1 {last_eval['eval_ema_top1']:.4f}" if "eval_ema_top1" in last_eval else "")
                    + f" ({last_eval['eval_count']} images)")
            if line:
                writer.write(step, line)
            if is_save:
                ckpt.save(step, state, data_state=train_iter.get_state(),
                          metrics={"eval_top1": last_eval["eval_top1"]} if is_eval else None)
                last_good = step
                writer.flush()
            progress.update(step, f"loss {line['train_loss']:.4f}" if "train_loss" in line else "")
            if preemption.requested:
                preempted = True
                break
    progress.close()
    if not last_eval and not preempted and step >= num_steps:
        # Nothing was left to train (a finished run, resumed): report the saved weights. A stop
        # at `stop_after_steps` evaluates only on the schedule's own evaluation steps, so a
        # run done in segments does not pay for an extra evaluation per segment.
        last_eval = evaluate_state(eval_step, state, iter(eval_iter), mesh)
    if preempted:
        progress.message(f"SIGTERM: saved a checkpoint at step {step} in {workdir}; rerun to resume")
    ckpt.close()
    writer.close()
    result = dict(last_eval)
    result.update({"step": step, "preempted": preempted, "num_steps": num_steps})
    return result

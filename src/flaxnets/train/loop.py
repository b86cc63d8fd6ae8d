"""The training loop: one linear function, read top to bottom, in banner-commented sections.

Resuming is the default: if WORKDIR/checkpoints holds a checkpoint, the run continues from it
(step, weights, BatchNorm statistics, optimizer, EMA, RNG and every process's data position), so
an interrupted run produces the same losses and weights as an uninterrupted one. A run whose
checkpoint is already at the last step is not compiled or evaluated again: it says so and
returns its last logged evaluation.
"""

from __future__ import annotations

import collections
from pathlib import Path
import signal
import sys
import threading
import time

import jax
import numpy as np

import flaxnets
from flaxnets import data as data_lib
from flaxnets.errors import FlaxnetsError
from flaxnets.models import param_kinds
from flaxnets.text import noun, plural
from flaxnets.train import parallel
from flaxnets.train.adapt import adapt_to_data
from flaxnets.train.checkpoint import Checkpointer, abstract_like
from flaxnets.train.evaluate import eval_batch_size, evaluate_state
from flaxnets.train.from_config import create_model_from_config, resolve_preprocessing, train_step_from_config
from flaxnets.data.decode import skipped_note
from flaxnets.data.sources import match_classes, split_folder
from flaxnets.train.metrics import MetricWriter, last_evaluation
from flaxnets.train.optim import build_optimizer
from flaxnets.train.progress import ProgressBar
from flaxnets.train.progressive import stage_at, stage_config, stage_plan
from flaxnets.train.state import split_model
from flaxnets.train.schedules import (
    build_schedule, config_steps_per_epoch, peak_lr, schedule_examples, total_steps,
)
from flaxnets.train.state import create_train_state
from flaxnets.train.step import make_eval_step
from flaxnets.train.workdir import (
    METRICS_FILE, check_workdir, create_workdir, sync_config, write_class_names, write_summary,
)


class _Preemption:
    """Turns SIGTERM, and a first Ctrl-C (SIGINT) when `ctrl_c`, into a request to save and stop
    at the next step boundary: `requested` becomes "SIGTERM" or "Ctrl-C". A second Ctrl-C raises
    KeyboardInterrupt at once (Python's own handler is back), for a user who will not wait.

    `ctrl_c` is off with several processes: a Ctrl-C reaching only one of them would make it
    save alone while the others wait for it in their next collective."""

    def __init__(self, *, ctrl_c: bool = True):
        self.requested: str | None = None
        self._ctrl_c = ctrl_c
        self._previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._handle)
            if self._ctrl_c and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self.requested = self.requested or "Ctrl-C"
        else:
            self.requested = self.requested or "SIGTERM"

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}


#: Training batches kept on the devices ahead of the step (double buffering, as big_vision's
#: `prefetch_to_device` default): one is being used, the next is already there.
PREFETCH = 2


class _Prefetch:
    """Keeps `depth` training batches on the devices ahead of the step that uses them.

    `next()` hands the oldest prefetched batch (already sharded global arrays of uint8 images);
    `fill()`, called once the step using it is dispatched, reads and transfers the following
    batches while the device computes. `get_state()` is the loader's position *before* the next
    batch the step will take, so a checkpoint resumes with that batch, not after the ones
    prefetched.
    """

    def __init__(self, loader, mesh, depth: int = 2):
        self.loader, self.mesh, self.depth = loader, mesh, max(1, int(depth))
        self._queue: collections.deque = collections.deque()

    def fill(self) -> None:
        while len(self._queue) < self.depth:
            position = self.loader.get_state()
            self._queue.append((position, parallel.shard_batch(next(self.loader), self.mesh)))

    def next(self) -> dict:
        if not self._queue:
            self.fill()
        return self._queue.popleft()[1]

    def get_state(self):
        return self._queue[0][0] if self._queue else self.loader.get_state()


def start_summary(config, *, workdir, state, mesh, train_examples: int, eval_examples: int,
                  data_classes: int | None, count_note: str | None, num_train: int,
                  steps_per_epoch: float, num_steps: int, start_step: int, init_from=None,
                  adapted=(), plan=(), eval_image_size=None) -> str:
    """What a run is about to do, as big_vision and timm print it at start (also written to
    WORKDIR/summary.txt): model, data, batch, BatchNorm grouping, devices, precision, schedule,
    work directory and whether it resumes, progressive learning's stages (`plan`, with evaluation
    at `eval_image_size`); then `adapted`, the lines of
    `flaxnets.train.adapt.adapt_to_data`, and the note on the data's count."""
    t, m = config.train, config.model
    devices, processes = mesh.devices.size, jax.process_count()
    parameters = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    classes = plural(data_classes, "class") if data_classes is not None else "classes unknown"
    if data_classes is not None and data_classes != m.num_classes:
        classes += f" (the model has {plural(m.num_classes, 'output')})"
    micro = t.global_batch_size // t.grad_accum_steps
    if m.bn_group_size is None:
        batch_norm = f"statistics over each whole micro-batch of {micro} across devices"
    else:
        batch_norm = (f"statistics per group of {plural(m.bn_group_size, 'example')} "
                      f"({plural(micro // m.bn_group_size, 'group')})")
    if start_step:
        start = f"resuming from the checkpoint at step {start_step}"
    elif init_from is not None:
        start = f"fresh start from {init_from}"
    else:
        start = "fresh start"
    rows = [
        ("model", f"{m.name}, {parameters:,} parameters, {plural(m.num_classes, 'class')}"),
        ("data", f"train {plural(train_examples, 'example', spec=',')}, eval {eval_examples:,}, {classes}"),
        ("batch", f"global {t.global_batch_size}, per device {micro // devices} x "
                  f"{t.grad_accum_steps} gradient accumulation {noun(t.grad_accum_steps, 'step')}"),
        ("augmentation", f"{config.data.augment}, random erasing {config.data.random_erasing:g}, "
                         f"on the {config.data.augment_on}"),
        ("BatchNorm", batch_norm),
        ("devices", f"{devices} {jax.devices()[0].platform} {noun(devices, 'device')} "
                    f"in {plural(processes, 'process')}"),
        ("precision", f"{m.dtype} compute; parameters, BatchNorm statistics, logits and loss float32"
                      + (f"; quantization-aware: {config.quant.weight_dtype} weights"
                         f" ({'per channel' if config.quant.per_channel_weights else 'per tensor'}) and"
                         f" {config.quant.activation_dtype} activations ({config.quant.activation_calibration} ranges)"
                         " fake-quantized in every forward pass (Qwix)" if config.quant.mode == "qat" else "")),
        ("schedule", f"{plural(steps_per_epoch, 'step per epoch', spec='g')} of "
                     f"{plural(num_train, 'example', spec=',')}, {plural(num_steps, 'step', spec=',')} "
                     f"({plural(t.epochs, 'epoch', spec='g')}), {config.schedule.name} to a peak learning rate of "
                     f"{peak_lr(config):g}"),
        ("workdir", f"{workdir} ({start})"),
    ]
    if config.progressive.stages:
        rows.insert(-1, ("progressive", f"{plural(len(plan), 'stage')}: image size "
                         f"{', '.join(str(s.image_size) for s in plan)} (evaluation at {eval_image_size}), "
                         f"ending after steps {', '.join(str(s.end_step) for s in plan)}"))
    width = max(len(k) for k, _ in rows)
    lines = [f"flaxnets train: recipe {config.name or '(unnamed)'}"]
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    lines += list(adapted)
    if count_note:
        lines.append(f"note: {count_note}")
    return "\n".join(lines)


def train_and_evaluate(config, *, data_dir, workdir, init_from=None, allow_config_change: bool = False,
                       stop_after_steps: int | None = None, stream=None) -> dict:
    """Train `config` on `data_dir` (train/ and val/ splits) into `workdir`; returns the last
    evaluation's metrics plus "step", "num_steps" and "preempted".

    `stop_after_steps` stops (with a checkpoint) after that optimizer step, as an interruption
    would; the result then has evaluation metrics only if that step was an evaluation step.
    SIGTERM, or a first Ctrl-C in a single-process run, saves a checkpoint and returns with
    "preempted" "SIGTERM" or "Ctrl-C" (None otherwise); a second Ctrl-C raises KeyboardInterrupt
    at once, without saving. A run already at its last step returns its last logged evaluation
    (with "eval_step") and "finished_before" True, training and evaluating nothing. A non-finite
    loss raises FlaxnetsError naming the step; no checkpoint holding it is written. The work
    directory is created only once the devices, batch and data have been checked.
    """
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
    train_path, eval_path = data_lib.training_paths(config.data, data_dir)
    train_source = data_lib.open_source(train_path, "train")
    num_train, count_note = schedule_examples(config.data.num_train_examples, len(train_source))
    num_steps = total_steps(config, num_train)
    # Progressive learning: the stages' sizes and regularisation, a function of the step only
    # (flaxnets.train.progressive); without stages, one stage of the whole run.
    plan = stage_plan(config, num_steps, prep["image_size"])
    train_iter = data_lib.train_loader_from_config(
        config.data, prep, train_source, global_batch_size=global_batch, seed=config.seed,
        process_index=jax.process_index(), process_count=jax.process_count(), device_count=local_devices,
        stages=[(stage.end_step, stage_config(config, stage).data, stage.image_size) for stage in plan]
        if config.progressive.stages else ())
    # The evaluation labels each image by its class *name*, as the training data numbers the
    # classes: a val/ with a subset of the classes, or another order, is scored correctly.
    eval_source = match_classes(data_lib.open_source(eval_path, "val"),
                                getattr(train_iter.source, "class_names", None),
                                where=str(split_folder(eval_path, "val")), whose="the training data")
    eval_iter = data_lib.eval_loader_from_config(
        config.data, prep, eval_source,
        global_batch_size=eval_batch_size(config.eval.batch_size, mesh.devices.size),
        process_index=jax.process_index(), process_count=jax.process_count(), device_count=local_devices)
    steps_per_epoch = config_steps_per_epoch(config, num_train)

    # ------------------------------------------------------- Adapt to data ----
    # A recipe written for other data takes this data's class count, BatchNorm / EMA averages
    # that fit the run and a BatchNorm group that fits the batch (flaxnets.train.adapt); the
    # adapted config is the run's (config.json, resume).
    config, adapted = adapt_to_data(config, data_classes=getattr(train_iter.source, "num_classes", None),
                                    num_steps=num_steps)

    # --------------------------------------------------------------- Model ----
    model = create_model_from_config(config)

    # ----------------------------------------------------------- Optimizer ----
    schedule = build_schedule(config, num_train)
    tx = build_optimizer(config, param_kinds(model), num_train, schedule)

    # ------------------------------------------------- Checkpoint / resume ----
    create_workdir(workdir)
    ckpt = Checkpointer(str(workdir), keep=config.checkpoint.keep, keep_best=config.checkpoint.keep_best)
    start_step = ckpt.latest_step()
    finished = start_step is not None and start_step >= num_steps
    sync_config(workdir, config, resuming=start_step is not None, allow_config_change=allow_config_change,
                write=is_main and not finished)
    if finished:
        ckpt.close()
        return _finished_before(workdir, data_dir, step=start_step, num_steps=num_steps,
                                stream=stream if is_main else None)
    if is_main:
        write_class_names(workdir, getattr(train_iter.source, "class_names", None))
    if start_step is None and init_from is not None:
        if Path(init_from).is_dir():  # a flaxnets run: e.g. a float run fine-tuned with quant.mode=qat
            from flaxnets.train.restore import load_run_weights

            init_from = load_run_weights(model, init_from)
        else:
            flaxnets.load_weights(model, init_from, skip_classifier=config.model.num_classes != 1000)
            init_from = f"the weights in {init_from}"
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
    if is_main:
        summary = start_summary(
            config, workdir=workdir, state=state, mesh=mesh, train_examples=train_iter.num_examples,
            eval_examples=eval_iter.num_examples, data_classes=getattr(train_iter.source, "num_classes", None),
            count_note=count_note, num_train=num_train, steps_per_epoch=steps_per_epoch, num_steps=num_steps,
            start_step=start_step, init_from=init_from, adapted=adapted, plan=plan,
            eval_image_size=prep["image_size"])
        print(summary, file=stream, flush=True)
        write_summary(workdir, summary)

    # --------------------------------------------------------------- Steps ----
    # One compiled train step per stage setting (image size, dropout, Mixup / CutMix alphas),
    # built when a stage first needs it and kept: each compiles once, for its one batch shape.
    train_steps: dict = {}

    def train_step_for(stage):
        """(the stage's train step, whether it is new: its first call compiles it)."""
        key = (stage.image_size, stage.dropout_rate, stage.mixup_alpha, stage.cutmix_alpha)
        new = key not in train_steps
        if new:
            staged = stage_config(config, stage)
            stage_graphdef = graphdef
            if staged.model.dropout_rate != config.model.dropout_rate:
                # The dropout rate is part of the static graph: the same parameters in a
                # network built with the stage's rate.
                stage_graphdef = split_model(create_model_from_config(staged))[0]
            train_steps[key] = train_step_from_config(staged, stage_graphdef, tx, schedule=schedule,
                                                      mean=prep["mean"], std=prep["std"], mesh=mesh)
        return train_steps[key], new

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
    # The logged images_per_second counts steady-state training only: from the end of the
    # segment's first step (which compiles the train step), restarted after every evaluation
    # and checkpoint.
    first_step = start_step + 1
    compiling = {first_step}  # steps that compiled a train step: not in the logged rate
    interval_start = time.perf_counter()
    last_eval: dict = {}
    last_good = start_step
    progress = ProgressBar(num_steps, start_step=start_step, images_per_step=global_batch,
                           stream=stream, every=log_every, active=is_main, first_step_compiles=True)

    def flush(step):
        """Check the pending steps for NaN/Inf and log their mean; returns the line's metrics."""
        nonlocal pending, interval_start
        if not pending:
            return {}
        timed = sum(1 for s, _ in pending if s not in compiling)
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
        }
        if timed and elapsed > 0:  # none for a line of only the compiling first step
            line["images_per_second"] = timed * global_batch / elapsed
        pending, interval_start = [], time.perf_counter()
        return line

    preempted = None
    step = start_step
    evaluated = False
    stage = None
    batches = _Prefetch(train_iter, mesh, depth=PREFETCH)
    preemption = _Preemption(ctrl_c=jax.process_count() == 1)
    try:
        with preemption:
            while step < last_step:
                if stage is None or step >= stage.end_step:
                    stage = stage_at(plan, step)
                    train_step, new = train_step_for(stage)
                    if config.progressive.stages and stage.start_step == step:
                        # Logged as its first step's; a resume truncates it with that step.
                        writer.write(step + 1, {"epoch": round((step + 1) / steps_per_epoch, 4), **stage.record()})
                    if step != start_step and new:
                        compiling.add(step + 1)
                        progress.message(f"step {step + 1}: stage {stage.index + 1} of {len(plan)} at "
                                         f"{stage.image_size}x{stage.image_size}: compiling its train step ...")
                        first_started = time.perf_counter()
                if step == start_step:
                    progress.message(f"step {step + 1}: compiling the train step (this first step takes longer) ...")
                    first_started = time.perf_counter()
                batch = batches.next()
                # Inputs are on the devices already: any implicit host<->device copy is a bug.
                with jax.transfer_guard("disallow"):
                    state, metrics = train_step(state, batch)
                batches.fill()  # the next batches' reading and transfer overlap with this step
                step += 1
                pending.append((step, metrics))
                if step in compiling:
                    jax.block_until_ready(metrics)
                    progress.message(f"step {step}: done in {time.perf_counter() - first_started:.1f} s "
                                     "(compiling included); rate and ETA from the steps after it")
                    interval_start = time.perf_counter()
                if jax.process_count() > 1 and ckpt.manager.reached_preemption(step):
                    preemption.requested = preemption.requested or "SIGTERM"
                stopping = preemption.requested or step == last_step
                is_eval = step % eval_every == 0 or step == num_steps
                is_save = is_eval or stopping or step % save_every == 0
                line = {}
                if is_save or stopping or step % log_every == 0:
                    line = flush(step)
                with progress.paused():
                    if is_eval:
                        if not evaluated:
                            progress.message(f"step {step}: evaluating {eval_iter.num_examples:,} images "
                                             "(the first evaluation compiles the eval step) ...")
                            evaluated = True
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
                        ckpt.save(step, state, data_state=batches.get_state(),
                                  metrics={"eval_top1": last_eval["eval_top1"]} if is_eval else None)
                        last_good = step
                        writer.flush()
                if is_eval or is_save:
                    interval_start = time.perf_counter()
                progress.update(step, f"loss {line['train_loss']:.4f}" if "train_loss" in line else "")
                if preemption.requested:
                    preempted = preemption.requested
                    break
    except KeyboardInterrupt:
        progress.close()
        kept = (f"the checkpoint at step {last_good} is kept; rerun the same command to resume from it"
                if last_good else "no checkpoint was saved")
        which = "second Ctrl-C" if preemption.requested == "Ctrl-C" else "Ctrl-C"
        raise KeyboardInterrupt(f"{which}: stopped at once at step {step} without saving; {kept}") from None
    progress.close()
    skipped = train_iter.skipped()
    if skipped and is_main:
        progress.message(f"note: {skipped_note(len(skipped))} in training (each named above); "
                         "another image of the epoch took each one's place")
    if preempted:
        progress.message(f"{preempted}: saved a checkpoint at step {step} in {workdir}; "
                         "rerun the same command to resume")
    ckpt.close()
    writer.close()
    result = dict(last_eval)
    result.update({"step": step, "preempted": preempted, "num_steps": num_steps})
    return result


def _finished_before(workdir, data_dir, *, step: int, num_steps: int, stream) -> dict:
    """The result for a run already at its last step: its last logged evaluation, said in one
    line on `stream` (None: say nothing) with the commands that would evaluate or train again."""
    last = last_evaluation(workdir / METRICS_FILE, step)
    if last:
        evaluation = f"eval_top1 {last['eval_top1']:.4f} at step {last['eval_step']} from {METRICS_FILE}"
    else:
        evaluation = f"no evaluation in {METRICS_FILE}"
    if stream is not None:
        print(f"flaxnets train: {workdir} already finished (step {step}/{num_steps}, {evaluation}); "
              f"evaluate again with `flaxnets eval --workdir {workdir} --data {data_dir}`, "
              "or train again into a new --workdir", file=stream, flush=True)
    return {**last, "step": step, "num_steps": num_steps, "preempted": None, "finished_before": True}

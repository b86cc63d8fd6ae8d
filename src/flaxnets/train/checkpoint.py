"""Checkpoints in WORKDIR/checkpoints with Orbax: the train state plus each process's data position.

Every process calls `save` and `restore` (Orbax coordinates who writes what); the train state is
written asynchronously. Kept: the last `keep` checkpoints and, with `keep_best`, the one with the
highest evaluation top-1. The data iterator's state is per process: each process writes and
reads its own `process_I-of-N.json`, so a resumed run continues from the exact batch it stopped at.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers

from flaxnets.errors import FlaxnetsError
from flaxnets.train.workdir import CHECKPOINT_DIR

BEST_METRIC = "eval_top1"


def _process_file(directory: epath.Path) -> epath.Path:
    return directory / f"process_{jax.process_index()}-of-{jax.process_count()}.json"


class ProcessCountChanged(FlaxnetsError):
    """A checkpoint's data positions cannot be taken over by this run's process count."""


def _state_of_other_process_count(directory: epath.Path, wanted: epath.Path):
    """The data position of a checkpoint saved by another number of processes.

    flaxnets' training loader keeps one position for the whole stream (the global step, seed,
    data size and global batch size), and each process takes its slice of every global batch,
    so the global batches do not depend on the process count (docs/RELIABILITY.md): when every
    saved process recorded the same position, this process continues from it. Otherwise (a
    loader whose positions are per process) this is one line naming both counts.
    """
    saved = sorted(directory.glob("process_*-of-*.json"))
    if not saved:
        raise FileNotFoundError(f"{wanted}: no data-iterator state in this checkpoint")
    counts = {p.name.rsplit("-of-", 1)[1].removesuffix(".json") for p in saved}
    records = [json.loads(p.read_text()) for p in saved]
    here = jax.process_count()
    if (len(counts) == 1 and len(saved) == int(next(iter(counts)))
            and all(r == records[0] for r in records) and records[0]["kind"] == "json"):
        return records[0]["value"]
    raise ProcessCountChanged(
        f"{directory.parent}: saved by {' or '.join(sorted(counts))} processes with differing data positions; "
        f"this run has {here}: resume with the same process count")


class DataStateHandler(ocp.CheckpointHandler):
    """Stores a JSON-able value (or bytes) per process: the input iterator's `get_state()`."""

    def save(self, directory: epath.Path, args: "DataStateSave"):
        value = args.state
        if isinstance(value, (bytes, bytearray)):
            record = {"kind": "bytes", "value": bytes(value).decode()}
        else:
            record = {"kind": "json", "value": value}
        _process_file(directory).write_text(json.dumps(record))

    def restore(self, directory: epath.Path, args: "DataStateRestore | None" = None):
        path = _process_file(directory)
        if not path.exists():
            return _state_of_other_process_count(directory, path)
        record = json.loads(path.read_text())
        return record["value"].encode() if record["kind"] == "bytes" else record["value"]

    def metadata(self, directory: epath.Path):
        return None

    def finalize(self, directory: epath.Path) -> None:
        pass

    def close(self):
        pass


@ocp.args.register_with_handler(DataStateHandler, for_save=True)
@dataclasses.dataclass
class DataStateSave(ocp.args.CheckpointArgs):
    state: Any


@ocp.args.register_with_handler(DataStateHandler, for_restore=True)
@dataclasses.dataclass
class DataStateRestore(ocp.args.CheckpointArgs):
    pass


#: Orbax notices that mean nothing to a user: saves without metrics (only evaluation steps carry
#: top-1, and the best-checkpoint policy is built for that), and the two warnings a read-only
#: manager gives every time eval, predict or export read a run back.
_QUIET_NOTICES = (
    "Requested `tracked_metric`",
    "Given directory is read only",
    "CheckpointManagerOptions.read_only=True",
)


class _QuietOrbax(logging.Filter):
    """Drops `_QUIET_NOTICES` from the absl logger Orbax writes to."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_QUIET_NOTICES)


logging.getLogger("absl").addFilter(_QuietOrbax())


def _best_metric(metrics) -> float:
    return float(metrics[BEST_METRIC])


#: A replicated array smaller than this is written whole by its first replica instead of in
#: slices by every replica that holds it (Orbax's replica-parallel save, its default except on
#: GPUs, writes each replica's slice of every array). Each slice is a jitted `lax.slice`,
#: compiled for each new shape: the first save of an EfficientNet-B0 train state on 4 CPU
#: devices cut 4,112 slices, 10.5 of its 11.2 s, for arrays nearly all under 100 KB. Arrays from
#: this size up are still written cooperatively (each process its part, on several hosts).
REPLICA_PARALLEL_MIN_BYTES = 1 << 20


def _state_handler() -> ocp.PyTreeCheckpointHandler:
    """Orbax's handler for the train state (what `StandardSave` uses: the same files on disk),
    with `REPLICA_PARALLEL_MIN_BYTES` for jax.Array; every other leaf type as Orbax registers it."""
    default = ocp.type_handlers.get_type_handler(jax.Array)
    arrays = ocp.type_handlers.ArrayHandler(
        # The default handler's metadata store (per-array shard metadata), so nothing on disk changes.
        array_metadata_store=getattr(default, "_array_metadata_store", None),
        min_slice_bytes_for_replica_parallel=REPLICA_PARALLEL_MIN_BYTES)
    others = [(kind, ocp.type_handlers.get_type_handler(kind))
              for kind in (int, float, bytes, np.number, np.ndarray, str)]
    registry = ocp.type_handlers.create_type_handler_registry(*others, (jax.Array, arrays))
    return ocp.PyTreeCheckpointHandler(save_concurrent_gb=96, restore_concurrent_gb=96,
                                       type_handler_registry=registry)


class Checkpointer:
    """Saves and restores (train state, data state) by step in `workdir/checkpoints`."""

    def __init__(self, workdir: str, *, keep: int = 2, keep_best: bool = True, async_save: bool = True,
                 read_only: bool = False):
        self.directory = Path(workdir).absolute() / CHECKPOINT_DIR
        policies = [checkpoint_managers.LatestN(n=max(1, keep))]
        if keep_best:
            policies.append(checkpoint_managers.BestN(
                get_metric_fn=_best_metric, n=1, keep_checkpoints_without_metrics=False))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
            best_fn=_best_metric if keep_best else None,
            best_mode="max",
            enable_async_checkpointing=async_save,
            create=not read_only,
            read_only=read_only,
        )
        self.manager = ocp.CheckpointManager(
            self.directory, options=options,
            item_handlers={"state": _state_handler(), "data": DataStateHandler()})

    def latest_step(self) -> int | None:
        """The newest saved step, or None."""
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        """The step with the best evaluation top-1 (the latest if none has metrics), or None."""
        step = self.manager.best_step()
        return self.manager.latest_step() if step is None else step

    def all_steps(self) -> list[int]:
        """Every step kept on disk, ascending."""
        return sorted(self.manager.all_steps())

    def save(self, step: int, state, data_state=None, metrics: dict | None = None) -> None:
        """Save `state` (and this process's `data_state`); every process must call this."""
        items = {"state": ocp.args.PyTreeSave(state)}
        if data_state is not None:
            items["data"] = DataStateSave(data_state)
        best = None
        if metrics is not None and BEST_METRIC in metrics:
            best = {k: float(v) for k, v in metrics.items()}
        self.manager.save(int(step), args=ocp.args.Composite(**items), metrics=best, force=True)

    def restore(self, step: int, abstract_state, *, with_data: bool = True):
        """Return (state, data_state) saved at `step`; `abstract_state` gives shapes and shardings
        (None: every array as saved, as a NumPy array on the host, whatever the devices)."""
        if abstract_state is None:
            saved = self.manager.item_metadata(int(step))["state"]
            tree = saved.tree if hasattr(saved, "tree") else saved
            restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        else:
            restore_args = ocp.checkpoint_utils.construct_restore_args(abstract_state)
        items = {"state": ocp.args.PyTreeRestore(abstract_state, restore_args=restore_args)}
        has_data = with_data and (self.directory / str(step) / "data").exists()
        if has_data:
            items["data"] = DataStateRestore()
        restored = self.manager.restore(int(step), args=ocp.args.Composite(**items))
        return restored["state"], (restored["data"] if has_data else None)

    def restore_newest_readable(self, abstract_state, *, warn, with_data: bool = True):
        """Restore the newest checkpoint that reads back; returns (step, state, data_state).

        A checkpoint that fails to restore (cut short by a crash or damaged on disk) is reported
        through `warn(line)` and moved to `WORKDIR/checkpoints-unreadable/` (kept for inspection,
        and out of the way of the resumed run, which will save that step again); the next older
        one is tried. Raises FlaxnetsError when none is readable.
        """
        steps = self.all_steps()
        for step in reversed(steps):
            try:
                state, data_state = self.restore(step, abstract_state, with_data=with_data)
                return step, state, data_state
            except ProcessCountChanged:
                raise  # readable, but not by this many processes: move nothing aside
            except Exception as e:  # any failure to read back means this checkpoint is unusable
                reason = (str(e).strip().splitlines() or [""])[0][:200]
                aside = self.directory.parent / f"{CHECKPOINT_DIR}-unreadable"
                warn(f"warning: checkpoint at step {step} in {self.directory} is unreadable "
                     f"({type(e).__name__}: {reason}); moved to {aside}, trying the previous one")
                _sync("unreadable-checkpoint")
                if jax.process_index() == 0:
                    aside.mkdir(exist_ok=True)
                    (self.directory / str(step)).rename(aside / f"{step}-{int(time.time())}")
                _sync("unreadable-checkpoint-moved")
                self.manager.reload()
        raise FlaxnetsError(f"no readable checkpoint in {self.directory} (tried steps {steps}); "
                            "move the directory away to start afresh")

    def close(self) -> None:
        """Finish pending saves and release the manager."""
        self.manager.wait_until_finished()
        self.manager.close()


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def abstract_like(tree):
    """Shapes, dtypes and shardings of `tree`: the target `Checkpointer.restore` takes."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)

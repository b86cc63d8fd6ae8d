"""Metric writers: WORKDIR/metrics.jsonl and TensorBoard event files (tensorboardX, no TensorFlow).

Only process 0 writes. On resume from step S, lines for steps after S are removed first, so the
steps that are run again are not logged twice.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from flaxnets.train.workdir import METRICS_FILE, TENSORBOARD_DIR


def _summary_writer_class():
    """tensorboardX's SummaryWriter, imported without PyTorch where torch is not loaded yet:
    tensorboardX imports torch when it is installed only to accept torch tensors, which flaxnets
    never logs, and that import was most of a training process's start: importing
    flaxnets.train.loop took 2.2 s, 1.2 s of it tensorboardX, and takes 1.0 s without torch
    (`python -X importtime`, idle 2-core VM, 2026-12-04)."""
    if "torch" in sys.modules:
        from tensorboardX import SummaryWriter
        return SummaryWriter
    sys.modules["torch"] = None  # `import torch` raises ImportError, which tensorboardX handles
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules["torch"]
    return SummaryWriter


def _json_value(value):
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/Inf; keep the line parseable.
    return value


def _records(path: Path):
    """(line, record) of each line of a metrics.jsonl that parses as a JSON object; a
    half-written last line (a crash mid-write) is passed over."""
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            yield line, record


def truncate_metrics(path: str | os.PathLike, step: int) -> int:
    """Drop every line of a metrics.jsonl whose step is greater than `step`; returns lines kept.

    A half-written last line (a crash mid-write) is dropped too.
    """
    path = Path(path)
    if not path.exists():
        return 0
    kept = [line for line, record in _records(path) if int(record.get("step", 0)) <= step]
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept))
    os.replace(tmp, path)
    return len(kept)


def last_evaluation(path: str | os.PathLike, step: int) -> dict:
    """The last logged evaluation (its eval_* values and "eval_step") at or before `step` in a
    metrics.jsonl; {} when there is none. Unparseable lines are passed over."""
    path = Path(path)
    found: dict = {}
    if not path.exists():
        return found
    for _, record in _records(path):
        if "eval_top1" in record and int(record.get("step", 0)) <= step:
            found = {k: v for k, v in record.items() if k.startswith("eval_")}
            found["eval_step"] = int(record["step"])
    return found


class MetricWriter:
    """Writes one JSON object per call to metrics.jsonl and each scalar to TensorBoard.

    `active=False` (every process but 0) makes every method a no-op.
    """

    def __init__(self, workdir: str | os.PathLike, *, active: bool = True, resume_step: int | None = None,
                 tensorboard: bool = True):
        self.active = active
        self._file = None
        self._tb = None
        if not active:
            return
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / METRICS_FILE
        if resume_step is not None:
            truncate_metrics(path, resume_step)
        elif path.exists():
            path.unlink()
        self._file = open(path, "a", buffering=1)
        if tensorboard:
            # purge_step drops TensorBoard events beyond the resumed step, like the jsonl.
            self._tb = _summary_writer_class()(
                str(workdir / TENSORBOARD_DIR), purge_step=None if resume_step is None else resume_step + 1
            )

    def write(self, step: int, metrics: dict) -> None:
        """Log `metrics` (name -> number) for `step`; `step` and `epoch` lead the JSON line."""
        if not self.active:
            return
        record = {"step": int(step)}
        record.update({k: _json_value(v) for k, v in metrics.items()})
        self._file.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for name, value in record.items():
                if name != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(name, value, global_step=int(step))

    def flush(self) -> None:
        """Push buffered lines and events to disk."""
        if self._file is not None:
            self._file.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        """Flush and close."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

"""Start `python -m flaxnets train` subprocesses and read what they leave in a work directory."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parents[2] / "src"
PYTHON = sys.executable

#: 13 steps of batch 32 at 32x32, EMA on, every step logged, checkpoints every 2 steps (3 kept),
#: evaluation at steps 6 and 12 (and the last step).
SMALL = [
    "train.global_batch_size=32", "train.epochs=0.3", "schedule.warmup_epochs=0.05", "ema.decay=0.9",
    "checkpoint.every_steps=2", "checkpoint.keep=3", "eval.every_steps=6", "eval.batch_size=120",
    "log.every_steps=1",
]


def train_env(devices: int = 1) -> dict:
    """Environment for a CLI subprocess: the source tree, `devices` CPU devices, a shared
    persistent compilation cache (the session's, tests/conftest.py, unless FLAXNETS_TEST_JAX_CACHE
    names another; later runs skip most XLA compiles), every compile cached."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_COMPILATION_CACHE_DIR"] = os.environ.get("FLAXNETS_TEST_JAX_CACHE", os.environ["JAX_COMPILATION_CACHE_DIR"])
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    return env


class Proc(subprocess.Popen):
    """A Popen whose stdout and stderr go to one log file, readable with `log()`."""

    def __init__(self, args, log_path: Path, **kw):
        self.log_path = log_path
        self._log = open(log_path, "w")
        super().__init__(args, stdout=self._log, stderr=subprocess.STDOUT, **kw)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()


#: Every run is data-parallel over this many CPU devices (as two processes of one device each are).
DEVICES = 2


def start_train(data, workdir, *extra_sets, args=(), devices: int = DEVICES, log_name=None) -> Proc:
    """Start `flaxnets train --recipe digits_demo` with the SMALL settings plus `extra_sets`."""
    workdir = Path(workdir)
    cmd = [PYTHON, "-m", "flaxnets", "train", "--recipe", "digits_demo", "--data", str(data),
           "--workdir", str(workdir)]
    for s in SMALL + list(extra_sets):
        cmd += ["--set", s]
    cmd += list(args)
    log_dir = workdir.parent / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    name = log_name or f"{workdir.name}-{time.monotonic_ns()}.log"
    return Proc(cmd, log_dir / name, env=train_env(devices))


def wait_ok(proc: Proc, timeout: float = 400) -> str:
    """Wait for `proc`; its output, asserting exit status 0."""
    rc = proc.wait(timeout=timeout)
    out = proc.log()
    assert rc == 0, f"exit {rc}:\n{out[-3000:]}"
    return out


def kill_when(proc: Proc, condition, *, delay: float = 0.0, poll: float = 0.02, timeout: float = 300):
    """SIGKILL `proc` once `condition()` holds (plus `delay` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended before the kill point:\n{proc.log()[-3000:]}"
        assert time.monotonic() < deadline, "kill point not reached in time"
        time.sleep(poll)
    if delay:
        time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL


def read_losses(workdir) -> dict[int, float]:
    """step -> train_loss from WORKDIR/metrics.jsonl (a half-written last line is skipped)."""
    path = Path(workdir) / "metrics.jsonl"
    out = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "train_loss" in record:
            out[int(record["step"])] = record["train_loss"]
    return out


def load_state(path) -> dict:
    """A saved train state as nested dicts of NumPy arrays (no target tree or devices needed)."""
    import jax
    import numpy as np
    import orbax.checkpoint as ocp

    with ocp.PyTreeCheckpointer() as ckptr:
        meta = ckptr.metadata(path)
        tree = meta.item_metadata.tree if hasattr(meta, "item_metadata") else meta
        args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        return ckptr.restore(path, restore_args=args)


def flatten(tree) -> dict:
    """path -> array for every leaf of a nested dict / list tree."""
    import jax

    return {jax.tree_util.keystr(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}

"""A run that is SIGKILLed (during evaluation, during a checkpoint write) or SIGTERMed and then
resumed with the same command ends with exactly the weights, EMA weights and train losses of an
uninterrupted run; a damaged newest checkpoint is reported and the previous one used.

Each `flaxnets train` subprocess pays JAX start-up and compiles, so the uninterrupted reference
run is shared by the module and every run is tiny (32x32 digits, batch 32, 13 steps).
"""

import signal
import time
from pathlib import Path

import numpy as np
import pytest

from reliab_helpers import (
    kill_when, load_state, read_losses, start_train, wait_ok,
)

pytestmark = pytest.mark.slow


def _assert_same_run(resumed: Path, reference: Path):
    got, want = read_losses(resumed), read_losses(reference)
    assert sorted(got) == sorted(want), "every step must be logged exactly once"
    assert got == want, "train_loss differs from the uninterrupted run"
    last = max(want)
    a = load_state(resumed / "checkpoints" / str(last) / "state")
    b = load_state(reference / "checkpoints" / str(last) / "state")
    for key in ("params", "ema_params", "batch_stats", "opt_state", "step"):
        la, lb = flatten(a[key]), flatten(b[key])
        assert la.keys() == lb.keys()
        for name in la:
            np.testing.assert_array_equal(la[name], lb[name], err_msg=f"{key}/{name}")


def flatten(tree) -> dict:
    """path -> array for every leaf of a nested dict / list tree."""
    import jax

    return {jax.tree_util.keystr(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _committed_steps(workdir: Path) -> list[int]:
    d = workdir / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.exists() else []


def test_sigkill_during_eval_and_checkpoint_write_then_damaged_checkpoint_resumes_exactly(
        digits_dir, reference, tmp_path):
    workdir = tmp_path / "run"

    # 1. SIGKILL during step 6's evaluation: step 5 is logged, step 6 (trained, then evaluated
    #    before it is logged or saved) is not.
    proc = start_train(digits_dir, workdir)
    kill_when(proc, lambda: 5 in read_losses(workdir), delay=1.0)
    assert 6 not in read_losses(workdir) and 6 not in _committed_steps(workdir), "kill came too late"
    assert _committed_steps(workdir)[-1] in (2, 4)  # step 4 may still be in its async write

    # 2. Resume; SIGKILL as soon as an asynchronous checkpoint write (step >= 8) is in progress.
    proc = start_train(digits_dir, workdir)
    ckpt_dir = workdir / "checkpoints"

    def writing():
        return any("tmp" in p.name and p.name.split(".")[0].isdigit() and int(p.name.split(".")[0]) >= 8
                   for p in ckpt_dir.iterdir())

    kill_when(proc, writing, delay=0.0, poll=0.002)
    steps = _committed_steps(workdir)
    assert steps and steps[-1] >= 6

    # 3. Damage the newest committed checkpoint as a crash mid-write on a non-atomic file
    #    system would: every array file cut to half its length.
    newest = steps[-1]
    for f in (ckpt_dir / str(newest) / "state").rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    out = wait_ok(start_train(digits_dir, workdir))
    assert f"checkpoint at step {newest}" in out and "unreadable" in out, out
    assert (workdir / "checkpoints-unreadable").is_dir(), "the damaged checkpoint is kept aside"
    _assert_same_run(workdir, reference)


def test_sigterm_saves_exits_zero_and_resumes_exactly(digits_dir, reference, tmp_path):
    workdir = tmp_path / "run"
    proc = start_train(digits_dir, workdir)
    deadline = time.monotonic() + 240
    while 3 not in read_losses(workdir):
        assert proc.poll() is None and time.monotonic() < deadline, proc.log()
        time.sleep(0.02)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=60)
    took = time.monotonic() - sent
    out = proc.log()
    assert rc == 0, out
    assert "preempted" in out and "SIGTERM: saved a checkpoint" in out, out
    assert took < 30, f"SIGTERM to exit took {took:.1f} s"
    stopped = _committed_steps(workdir)[-1]
    assert stopped >= 3 and stopped < max(read_losses(reference))
    assert max(read_losses(workdir)) == stopped
    wait_ok(start_train(digits_dir, workdir))
    _assert_same_run(workdir, reference)

"""A run that is SIGKILLed (during evaluation, during a checkpoint write), SIGTERMed, and finds its
newest checkpoint damaged, each time resumed with the same command, ends with exactly the
weights, EMA weights and train losses of an uninterrupted run; SIGTERM saves and exits 0; the
damaged checkpoint is reported and the previous one used.

Each `flaxnets train` subprocess pays JAX start-up and compiles, so the uninterrupted reference
run is shared (conftest.py) and every run is tiny (32x32 digits, batch 32, 13 steps).
"""

import signal
import time
from pathlib import Path

import numpy as np
import pytest

from reliab_helpers import (
    flatten, kill_when, load_state, read_losses, start_train, wait_ok,
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


def _committed_steps(workdir: Path) -> list[int]:
    d = workdir / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.exists() else []


def _metrics_lines(workdir: Path) -> int:
    path = workdir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_sigkill_sigterm_and_a_damaged_checkpoint_then_resume_exactly(digits_dir, reference, tmp_path):
    """One run interrupted four ways in turn, each resumed with the same command; it ends with
    exactly the uninterrupted run's weights, EMA weights, optimizer state and losses."""
    workdir = tmp_path / "run"

    # 1. SIGKILL during step 6's evaluation: step 5 is logged, step 6 (trained, then evaluated
    #    before it is logged or saved) is not. The kill follows the run's own "evaluating" line
    #    (a fixed delay after step 5 was too late once the evaluation step came from the
    #    compilation cache and the saves got faster).
    proc = start_train(digits_dir, workdir)
    kill_when(proc, lambda: "step 6: evaluating" in proc.log(), poll=0.005)
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

    # 3. Resume; SIGTERM (preemption) once the resumed run has logged a step: it saves a
    #    checkpoint at the step it reached and exits 0 within a bounded time.
    logged = _metrics_lines(workdir)
    proc = start_train(digits_dir, workdir)
    deadline = time.monotonic() + 240
    while _metrics_lines(workdir) <= logged:
        assert proc.poll() is None and time.monotonic() < deadline, proc.log()[-3000:]
        time.sleep(0.02)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=60)
    took = time.monotonic() - sent
    out = proc.log()
    assert rc == 0, out[-3000:]
    assert "SIGTERM: saved a checkpoint" in out, out[-3000:]
    assert took < 30, f"SIGTERM to exit took {took:.1f} s"
    stopped = _committed_steps(workdir)[-1]
    assert steps[-1] < stopped < max(read_losses(reference)), (steps, stopped)

    # 4. Damage the newest committed checkpoint as a crash mid-write on a non-atomic file
    #    system would: every array file cut to half its length. The resume reports it, sets it
    #    aside and continues from the previous one.
    for f in (ckpt_dir / str(stopped) / "state").rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    out = wait_ok(start_train(digits_dir, workdir))
    assert f"checkpoint at step {stopped}" in out and "unreadable" in out, out[-3000:]
    assert (workdir / "checkpoints-unreadable").is_dir(), "the damaged checkpoint is kept aside"
    _assert_same_run(workdir, reference)

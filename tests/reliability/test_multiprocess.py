"""Two processes on 127.0.0.1 with one CPU device each train exactly what one process with two
CPU devices trains: same losses, same checkpoint, every validation image counted once; the
checkpoint is written by both processes together, and a two-process run, or one process with
two devices, resumes from it with the losses of the uninterrupted run.

If both processes read the same shard (instead of disjoint halves of each global batch), the
global batch would hold duplicates and the losses would differ from the one-process run.
"""

import json
import shutil
import socket

import numpy as np
import pytest

from reliab_helpers import DEVICES, flatten, load_state, read_losses, start_train, wait_ok

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(data, workdir, tag: str, args=()) -> list[str]:
    port = _free_port()
    procs = [start_train(data, workdir, devices=1, log_name=f"{tag}-process{i}.log",
                         args=[*args, "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                               "--process-id", str(i)])
             for i in range(2)]
    return [wait_ok(p, timeout=600) for p in procs]


def _eval_counts(workdir) -> dict[int, int]:
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["eval_count"] for r in records if "eval_count" in r}


def test_two_processes_train_and_resume_like_one_process_with_two_devices(digits_dir, reference, tmp_path):
    # `reference`: the same recipe and global batch, uninterrupted, one process with 2 devices.
    assert DEVICES == 2
    two = tmp_path / "two-processes"
    _two_processes(digits_dir, two, "first", args=["--max-steps", "4"])
    step4 = two / "checkpoints" / "4"
    # Cooperative write: each process wrote its own part of the arrays and its own data position.
    assert sorted(p.name for p in (step4 / "state").glob("ocdbt.process_*")) == ["ocdbt.process_0", "ocdbt.process_1"]
    assert sorted(p.name for p in (step4 / "data").glob("process_*")) == ["process_0-of-2.json", "process_1-of-2.json"]

    # The same checkpoint resumed by ONE process with two devices (the global batches do not
    # depend on the process count): the losses of the uninterrupted run.
    one = tmp_path / "resumed-by-one-process"
    shutil.copytree(two, one)
    wait_ok(start_train(digits_dir, one, log_name="one-process.log"), timeout=600)

    out = _two_processes(digits_dir, two, "resumed")  # resumes at step 4 and runs to the end
    assert "step 13/13" in out[0], out[0][-2000:]

    got, want = read_losses(two), read_losses(reference)
    assert sorted(got) == sorted(want) == list(range(1, 14))
    np.testing.assert_allclose([got[s] for s in sorted(got)], [want[s] for s in sorted(want)], rtol=1e-5)
    by_one = read_losses(one)
    assert sorted(by_one) == list(range(1, 14))
    np.testing.assert_allclose([by_one[s] for s in range(1, 14)], [want[s] for s in range(1, 14)], rtol=1e-5)
    # Every one of the 360 validation images once, whatever the number of processes.
    assert _eval_counts(two) == _eval_counts(reference) == {6: 360, 12: 360, 13: 360}

    a = load_state(two / "checkpoints" / "13" / "state")
    b = load_state(reference / "checkpoints" / "13" / "state")
    for key in ("params", "ema_params", "batch_stats", "opt_state", "step"):
        la, lb = flatten(a[key]), flatten(b[key])
        assert la.keys() == lb.keys()
        for name in la:
            np.testing.assert_allclose(la[name], lb[name], rtol=1e-4, atol=1e-6, err_msg=f"{key}/{name}")


def test_when_one_process_dies_the_other_stops_instead_of_hanging(digits_dir, tmp_path, monkeypatch):
    """SIGKILL process 1 mid-run: process 0 exits (non-zero) instead of waiting for a peer that
    is gone, once JAX's coordination service misses process 1's heartbeats
    (FLAXNETS_HEARTBEAT_TIMEOUT, here 10 s; JAX's default is 100 s). A dead process 0 takes the
    coordination service with it, and its peers fail at their next collective (docs/RELIABILITY.md)."""
    import time

    from reliab_helpers import kill_when

    monkeypatch.setenv("FLAXNETS_HEARTBEAT_TIMEOUT", "10")
    port = _free_port()
    workdir = tmp_path / "run"
    # The first test's settings, so its compiled steps are reused from the compilation cache; the
    # kill comes at the first logged loss (step 2 of 13), long before the end.
    procs = [start_train(digits_dir, workdir, devices=1, log_name=f"process{i}.log",
                         args=["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                               "--process-id", str(i)])
             for i in range(2)]
    survivor = procs[0]
    try:
        kill_when(procs[1], lambda: len(read_losses(workdir)) >= 1, timeout=300)
        start = time.monotonic()
        rc = survivor.wait(timeout=90)
        assert rc != 0, survivor.log()[-2000:]
        assert time.monotonic() - start < 90
        assert "heartbeat" in survivor.log(), survivor.log()[-2000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()

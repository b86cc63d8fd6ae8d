"""Two processes on 127.0.0.1 with one CPU device each train exactly what one process with two
CPU devices trains: same losses, same checkpoint, every validation image counted once; the
checkpoint is written by both processes together, and a two-process run resumes from it.

If both processes read the same shard (instead of disjoint halves of each global batch), the
global batch would hold duplicates and the losses would differ from the one-process run.
"""

import json
import socket

import numpy as np
import pytest

from reliab_helpers import load_state, read_losses, start_train, wait_ok
from test_resume import flatten

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(data, workdir, max_steps: int, tag: str) -> list[str]:
    port = _free_port()
    procs = [start_train(data, workdir, devices=1, log_name=f"{tag}-process{i}.log",
                         args=["--max-steps", str(max_steps), "--coordinator", f"127.0.0.1:{port}",
                               "--num-processes", "2", "--process-id", str(i)])
             for i in range(2)]
    return [wait_ok(p, timeout=600) for p in procs]


def _eval_counts(workdir) -> dict[int, int]:
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["eval_count"] for r in records if "eval_count" in r}


def test_two_processes_train_and_resume_like_one_process_with_two_devices(digits_dir, tmp_path):
    two = tmp_path / "two-processes"
    _two_processes(digits_dir, two, 4, "first")
    step4 = two / "checkpoints" / "4"
    # Cooperative write: each process wrote its own part of the arrays and its own data position.
    assert sorted(p.name for p in (step4 / "state").glob("ocdbt.process_*")) == ["ocdbt.process_0", "ocdbt.process_1"]
    assert sorted(p.name for p in (step4 / "data").glob("process_*")) == ["process_0-of-2.json", "process_1-of-2.json"]

    out = _two_processes(digits_dir, two, 6, "resumed")
    assert "step 6/13" in out[0], out[0][-2000:]

    one = tmp_path / "one-process"
    wait_ok(start_train(digits_dir, one, devices=2, args=["--max-steps", "6"]), timeout=600)

    got, want = read_losses(two), read_losses(one)
    assert sorted(got) == sorted(want) == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([got[s] for s in sorted(got)], [want[s] for s in sorted(want)], rtol=1e-5)
    # Every one of the 360 validation images once, whatever the number of processes.
    assert _eval_counts(two) == _eval_counts(one) == {6: 360}

    a = load_state(two / "checkpoints" / "6" / "state")
    b = load_state(one / "checkpoints" / "6" / "state")
    for key in ("params", "ema_params", "batch_stats", "opt_state", "step"):
        la, lb = flatten(a[key]), flatten(b[key])
        assert la.keys() == lb.keys()
        for name in la:
            np.testing.assert_allclose(la[name], lb[name], rtol=1e-4, atol=1e-6, err_msg=f"{key}/{name}")

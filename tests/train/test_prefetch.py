"""The loop's device prefetch: batches are on the devices before the step that uses them, the
step runs under `jax.transfer_guard("disallow")`, and a checkpoint's data position is the next
batch the *step* will use, not the next one the loader made. Also: a checkpoint's data
position is read back by another process count.

The exact-resume tests (tests/train/test_loop.py, tests/reliability/test_resume.py) run with the
prefetch on, so they guard the resumed losses; these tests guard the parts they cannot see.
"""

import json

import numpy as np
import pytest
from loop_helpers import train, train_losses

from flaxnets.errors import FlaxnetsError
from flaxnets.train import loop


class _CountingLoader:
    """A loader whose position is the number of batches it made; batch i holds the value i."""

    def __init__(self):
        self.made = 0

    def get_state(self):
        return {"step": self.made}

    def __next__(self):
        self.made += 1
        return {"image": np.full((4, 2, 2, 3), self.made - 1, np.uint8), "label": np.zeros(4, np.int32)}


def test_saved_position_is_the_next_batch_the_step_uses(monkeypatch):
    monkeypatch.setattr(loop.parallel, "shard_batch", lambda batch, mesh: batch)
    loader = _CountingLoader()
    batches = loop._Prefetch(loader, mesh=None, depth=2)
    first = batches.next()
    batches.fill()
    assert int(first["image"].flat[0]) == 0
    assert loader.made == 3  # batches 1 and 2 wait on the devices ...
    assert batches.get_state() == {"step": 1}  # ... but a resume must start with batch 1
    second = batches.next()
    assert int(second["image"].flat[0]) == 1 and batches.get_state() == {"step": 2}


def test_the_train_step_runs_under_a_transfer_guard(digits, tmp_path, monkeypatch):
    """A batch left on the host (numpy) makes the step fail: the guard is on. The normal runs of
    the other loop tests pass under it, so no hidden transfer happens in the step."""
    monkeypatch.setattr(loop.parallel, "shard_batch", lambda batch, mesh: dict(batch))
    with pytest.raises(Exception, match="[Dd]isallowed host-to-device transfer"):
        train(digits, tmp_path / "run", stop_after_steps=1)


def test_a_run_stopped_with_batches_prefetched_resumes_with_the_losses_of_one_run(digits, tmp_path):
    """Stopped after step 3 with steps 4 and 5's batches already on the devices: the resumed
    run's losses are those of an uninterrupted run (steps 4 and 5 are not skipped)."""
    whole = train(digits, tmp_path / "whole", "train.epochs=0.15")
    train(digits, tmp_path / "parts", "train.epochs=0.15", stop_after_steps=3)
    saved = json.loads((tmp_path / "parts" / "checkpoints" / "3" / "data" / "process_0-of-1.json").read_text())
    assert saved["value"]["step"] == 3
    train(digits, tmp_path / "parts", "train.epochs=0.15")
    np.testing.assert_allclose([l for _, l in train_losses(tmp_path / "parts")],
                               [l for _, l in train_losses(tmp_path / "whole")], rtol=1e-6)
    assert whole["step"] == 6


def test_data_position_of_another_process_count(tmp_path):
    """Saved by two processes with one position: read back by one. Positions that differ: one
    line naming the counts, and the checkpoint is not treated as damaged."""
    from etils import epath

    from flaxnets.train.checkpoint import ProcessCountChanged, _state_of_other_process_count

    d = tmp_path / "checkpoints" / "4" / "data"
    d.mkdir(parents=True)
    for i in range(2):
        (d / f"process_{i}-of-2.json").write_text(json.dumps({"kind": "json", "value": {"step": 4}}))
    assert _state_of_other_process_count(epath.Path(d), epath.Path(d / "process_0-of-1.json")) == {"step": 4}
    (d / "process_1-of-2.json").write_text(json.dumps({"kind": "json", "value": {"step": 5}}))
    with pytest.raises(ProcessCountChanged, match="saved by 2 processes with differing data positions; this run has 1"):
        _state_of_other_process_count(epath.Path(d), epath.Path(d / "process_0-of-1.json"))
    assert issubclass(ProcessCountChanged, FlaxnetsError)

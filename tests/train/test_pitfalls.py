"""Loop-level guards against silent failures: divergence stops the run with the last good
checkpoint intact, and a batch that does not split over devices x micro-steps is refused before
anything runs. The tiny network of test_loop stands in for the zoo (see there why)."""

import re

import numpy as np
import pytest

from flaxnets.errors import FlaxnetsError
from loop_helpers import read_lines, saved_state, train


@pytest.mark.slow
def test_divergence_stops_with_the_step_and_keeps_the_last_checkpoint(digits, tmp_path):
    # Adam moves every weight by about the learning rate per step: 1e37 gives finite weights
    # after step 1 and an overflow (Inf, then NaN in BatchNorm) in the forward pass after.
    workdir = tmp_path / "run"
    with pytest.raises(FlaxnetsError, match=r"training diverged: .* at step \d+") as e:
        train(digits, workdir, "schedule.base_lr=1e37", "checkpoint.every_steps=1", "checkpoint.keep_best=false")
    message = str(e.value)
    assert "\n" not in message
    bad_step = int(re.search(r"at step (\d+)", message).group(1))
    assert bad_step >= 2, message
    assert f"last good checkpoint (step {bad_step - 1}) is kept" in message
    # The last checkpoint is the step before the divergence, readable and finite.
    step, state = saved_state(workdir)
    assert step == bad_step - 1
    floats = [v for v in state.values() if np.issubdtype(v.dtype, np.floating)]
    assert floats and all(np.isfinite(v).all() for v in floats)
    assert all(r["step"] < bad_step for r in read_lines(workdir))


def test_batch_not_divisible_by_devices_times_accumulation_is_refused(digits, tmp_path):
    # 4 fake devices x 3 micro-steps = 12 does not divide 30 (which the config alone accepts:
    # 3 divides it); refused before any training.
    workdir = tmp_path / "run"
    with pytest.raises(FlaxnetsError, match=r"global_batch_size=30 is not divisible by 4 devices x 3 grad_accum_steps"):
        train(digits, workdir, "train.global_batch_size=30", "train.grad_accum_steps=3")
    assert not (workdir / "checkpoints").exists()
    assert not (workdir / "metrics.jsonl").exists()

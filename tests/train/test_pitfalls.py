"""Loop-level guards against silent failures: divergence stops the run with the last good
checkpoint intact, and a batch that does not split over devices x micro-steps is refused before
anything runs. The tiny network of test_loop stands in for the zoo (see there why). And the
pitfalls list of docs/RECIPES.md names tests that exist, and the code cites it, not a file outside
the repository."""

import re
from pathlib import Path

import numpy as np
import pytest

from flaxnets.errors import FlaxnetsError
from flaxnets.recipes._pitfalls import PITFALLS
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


ROOT = Path(__file__).resolve().parents[2]


def test_every_pitfall_names_tests_that_exist():
    for number, pitfall in enumerate(PITFALLS, 1):
        assert pitfall.tests, f"pitfall {number} names no test"
        for ref in pitfall.tests:
            path, function = ref.split("::")
            assert (ROOT / path).is_file(), f"pitfall {number}: {path} does not exist"
            assert re.search(rf"^def {function}\(", (ROOT / path).read_text(), re.M), \
                f"pitfall {number}: {ref} does not exist"


def test_code_cites_the_pitfalls_of_the_repositorys_own_docs():
    for file in sorted((ROOT / "src").rglob("*.py")):
        for row, line in enumerate(file.read_text().splitlines(), 1):
            where = f"{file.relative_to(ROOT)}:{row}"
            assert "RECIPES.md" not in line.replace("docs/RECIPES.md", ""), f"{where} cites a RECIPES.md outside docs/"
            for number in re.findall(r"[Pp]itfall (\d+)", line):
                assert 1 <= int(number) <= len(PITFALLS), f"{where}: there is no pitfall {number}"

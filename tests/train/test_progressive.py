"""Progressive learning (flaxnets.train.progressive): the stage schedule against a hand
computation of google/automl efficientnetv2/main.py's formulas, the one-line errors for stage
settings that cannot run, and a 3-stage digits run that changes image size and regularisation at
the stated steps, compiles one train step per size, and after a kill -9 mid-stage resumes
bit-exactly."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from loop_helpers import HERE, OVERRIDES, SRC, create_tiny_pooled_model, read_lines, saved_state, train_losses

import flaxnets.models
from flaxnets.config import Config, apply_overrides
from flaxnets.errors import UsageError
from flaxnets.train.progressive import stage_at, stage_plan


def _plan(*overrides, num_steps=1001, final=300):
    return stage_plan(apply_overrides(Config(), list(overrides)), num_steps, final)


def test_stages_follow_the_automl_formulas():
    """EfficientNetV2-S's settings (4 stages from ibase 128 to 300, RandAugment 5..10) over 1001
    steps, by hand: stage i ends after int((i + 1) / 4 * 1001) steps = 250, 500, 750, 1001 and
    trains at int(128 + 172 * (i + 1) / 4) = 171, 214, 257, 300 pixels; the regularisers are
    linspace(min, max, 4): 5, 6.667, 8.333, 10 and 0, 0.0667, 0.1333, 0.2."""
    plan = _plan("data.augment=randaugment", "progressive.stages=4", "progressive.base_image_size=128",
                 "progressive.randaugment_magnitude=5,10", "progressive.mixup_alpha=0,0.2",
                 "progressive.dropout_rate=0.1,0.3")
    assert [(s.start_step, s.end_step) for s in plan] == [(0, 250), (250, 500), (500, 750), (750, 1001)]
    assert [s.image_size for s in plan] == [171, 214, 257, 300]
    np.testing.assert_allclose([s.randaugment_magnitude for s in plan], [5, 5 + 5 / 3, 5 + 10 / 3, 10])
    np.testing.assert_allclose([s.mixup_alpha for s in plan], [0, 0.2 / 3, 0.4 / 3, 0.2])
    np.testing.assert_allclose([s.dropout_rate for s in plan], [0.1, 0.1 + 0.2 / 3, 0.1 + 0.4 / 3, 0.3])
    assert [s.cutmix_alpha for s in plan] == [0.0] * 4  # not staged: data.cutmix_alpha throughout
    # The stage of a step: step 250 (the 251st) is stage 1's first.
    assert [stage_at(plan, t).index for t in (0, 249, 250, 499, 500, 1000, 1001)] == [0, 0, 1, 1, 2, 3, 3]
    # Without a base, the reference's input_image_size / 2: int(150 + 150 * (i + 1) / 4).
    assert [s.image_size for s in _plan("progressive.stages=4")] == [187, 225, 262, 300]
    # Off: one stage of every step at the run's size, with the data's values.
    (only,) = _plan(num_steps=13, final=224)
    assert (only.start_step, only.end_step, only.image_size, only.mixup_alpha) == (0, 13, 224, 0.0)


@pytest.mark.parametrize("overrides, message", [
    (["progressive.stages=0"], "progressive.stages=0: expected a positive number of stages"),
    (["progressive.stages=3", "progressive.mixup_alpha=0.5,0.1"], "progressive.mixup_alpha=0.5,0.1: expected 0 <= min <= max"),
    (["progressive.stages=3", "progressive.dropout_rate=0.1,1.5"], "progressive.dropout_rate=0.1,1.5: expected rates below 1"),
    (["progressive.stages=3", "progressive.base_image_size=400", "progressive.final_image_size=300"],
     "progressive.base_image_size=400: expected at most the final training size 300"),
    (["progressive.stages=3", "progressive.randaugment_magnitude=5,15"],
     "progressive.randaugment_magnitude=5,15: data.augment is 'none'; expected randaugment"),
    (["progressive.mixup_alpha=0,0.2"], "progressive.mixup_alpha=0.0,0.2: set progressive.stages too"),
])
def test_bad_stage_settings_are_one_line_errors(overrides, message):
    with pytest.raises(UsageError) as e:
        apply_overrides(Config(), overrides)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_stage_sizes_that_do_not_fit_the_model_are_one_line_errors():
    with pytest.raises(UsageError, match=r"^progressive.base_image_size=8: stage 0 would train at 14 pixels; "
                                         r"expected every stage at least 32"):
        _plan("progressive.stages=4", "progressive.base_image_size=8", final=32)
    with pytest.raises(UsageError, match=r"^progressive.stages=4: stage 0 would have no step of the run's 3"):
        _plan("progressive.stages=4", num_steps=3)


# ---------------------------------------------------------------------------------------------
# A 3-stage digits run: 13 steps end after int(13 / 3) = 4, int(26 / 3) = 8 and 13 steps, at
# int(32 + 32 * (i + 1) / 3) = 42, 53 and 64 pixels; evaluation stays at the recipe's 32.

STAGED = ["progressive.stages=3", "progressive.base_image_size=32", "progressive.final_image_size=64",
          "data.augment=randaugment", "progressive.randaugment_magnitude=5,10",
          "progressive.mixup_alpha=0,0.2", "progressive.dropout_rate=0,0.2", "checkpoint.every_steps=2"]
SIZES = {1: 42, 5: 53, 9: 64}  # first step of each stage -> its image size


def _train(data_dir, workdir, monkeypatch=None):
    from flaxnets.train import loop

    built = []
    if monkeypatch is not None:
        build = loop.train_step_from_config

        def recording(*args, **kwargs):
            step = build(*args, **kwargs)
            calls = []
            built.append((step, calls))

            def run(state, batch):
                calls.append((int(state.step) + 1, batch["image"].shape[1]))
                return step(state, batch)
            return run

        monkeypatch.setattr(loop, "train_step_from_config", recording)
    original = flaxnets.models.create_model
    flaxnets.models.create_model = create_tiny_pooled_model
    try:
        result = loop.train_and_evaluate(apply_overrides(_config_base(), STAGED), data_dir=str(data_dir),
                                         workdir=str(workdir))
    finally:
        flaxnets.models.create_model = original
    return result, built


def _config_base():
    from flaxnets.recipes import load_recipe

    return apply_overrides(load_recipe("digits_demo"), OVERRIDES)


@pytest.fixture(scope="module")
def staged_run(digits, tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    try:
        workdir = tmp_path_factory.mktemp("staged") / "run"
        result, built = _train(digits, workdir, monkeypatch)
    finally:
        monkeypatch.undo()
    return workdir, result, built


@pytest.mark.slow
def test_a_three_stage_run_changes_size_and_regularisation_at_the_stated_steps(staged_run):
    workdir, result, built = staged_run
    assert result["step"] == 13 and result["eval_count"] == 360
    stages = [r for r in read_lines(workdir) if "stage" in r]
    assert [(r["step"], r["stage"], r["image_size"]) for r in stages] == [(1, 0, 42), (5, 1, 53), (9, 2, 64)]
    np.testing.assert_allclose([r["randaugment_magnitude"] for r in stages], [5, 7.5, 10])
    np.testing.assert_allclose([r["mixup_alpha"] for r in stages], [0, 0.1, 0.2])
    np.testing.assert_allclose([r["dropout_rate"] for r in stages], [0, 0.1, 0.2])
    # One train step per size, each fed only its size's batches and compiled once.
    assert len(built) == 3
    for (step, calls), first in zip(built, SIZES):
        assert step._cache_size() == 1
        assert {size for _, size in calls} == {SIZES[first]} and calls[0][0] == first
    assert [s for _, calls in built for s, _ in calls] == list(range(1, 14))
    # The report plots the stages against the step.
    from flaxnets.report import STAGE_PLOT_FILE, write_report

    report = write_report(workdir, workdir / "report")
    assert f"]({STAGE_PLOT_FILE})" in report.read_text() and (workdir / "report" / STAGE_PLOT_FILE).stat().st_size > 0


KILL_SCRIPT = """
import sys, time
sys.path[:0] = [{here!r}, {src!r}]
import flaxnets.models, flaxnets.train.loop as loop, loop_helpers
from flaxnets import cli

flaxnets.models.create_model = loop_helpers.create_tiny_pooled_model
build = loop.train_step_from_config


def slow_from_step_7(*args, **kwargs):
    # From step 7 (stage 1's third) a step takes a second, so the kill lands inside stage 1
    # once step 6's checkpoint is committed.
    step = build(*args, **kwargs)

    def slow(state, batch):
        if int(state.step) + 1 >= 7:
            open({marker!r}, "w").close()
            time.sleep(1.0)
        return step(state, batch)
    return slow


loop.train_step_from_config = slow_from_step_7
sets = [a for s in loop_helpers.OVERRIDES + {staged!r} for a in ("--set", s)]
sys.exit(cli.main(["train", "--recipe", "digits_demo", "--data", {data!r}, "--workdir", {workdir!r}, *sets]))
"""


@pytest.mark.slow
def test_a_kill_mid_stage_resumes_bit_exactly(staged_run, digits, tmp_path):
    """SIGKILL inside step 7 (stage 1: steps 5-8) after step 6's checkpoint: the rerun starts at
    step 6, in stage 1 at 53 pixels, and ends with the uninterrupted run's losses, stage records
    and weights."""
    reference, _, _ = staged_run
    workdir, marker = tmp_path / "run", tmp_path / "in-step-7"
    script = KILL_SCRIPT.format(here=str(HERE), src=str(SRC), data=str(digits), workdir=str(workdir),
                                marker=str(marker), staged=STAGED)
    log = open(tmp_path / "log.txt", "w")
    proc = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ, JAX_PLATFORMS="cpu"),
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not (marker.exists() and (workdir / "checkpoints" / "6").is_dir()):
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "log.txt").read_text()[-3000:]
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert saved_state(workdir)[0] == 6, "the kill must land after step 6's checkpoint, inside stage 1"

    result, built = _train(digits, workdir, pytest.MonkeyPatch())
    assert result["step"] == 13
    assert train_losses(workdir) == train_losses(reference)
    stage_records = [r for r in read_lines(workdir) if "stage" in r]
    assert stage_records == [r for r in read_lines(reference) if "stage" in r]  # stage 1's kept, none twice
    _, a = saved_state(reference)
    _, r = saved_state(workdir)
    assert a.keys() == r.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], r[key], err_msg=key)

"""The training loop end to end on the exported digits: the loss falls, runs are deterministic,
an interrupted run resumes exactly, evaluation counts every image once, and 4 devices give the
losses of 1 (BatchNorm over the global batch).

The network is the tiny one of `loop_helpers`. The runs are module-scoped and shared between
the tests.
"""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from loop_helpers import HERE, NUM_STEPS, SRC, create_tiny_model, read_lines, saved_state, train, train_losses

import flaxnets.models

@pytest.fixture(scope="module")
def runs(digits, tmp_path_factory):
    """Two full runs with the same seed, and one stopped after step 5 then resumed to the end."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    out["a"] = train(digits, root / "a")
    out["b"] = train(digits, root / "b")
    out["stopped"] = train(digits, root / "resumed", stop_after_steps=5)
    out["resumed"] = train(digits, root / "resumed")
    out["dirs"] = {name: root / name for name in ("a", "b", "resumed")}
    return out


pytestmark = pytest.mark.slow


def test_the_loss_falls(runs):
    losses = [loss for _, loss in train_losses(runs["dirs"]["a"])]
    assert len(losses) == NUM_STEPS
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.1
    assert runs["a"]["step"] == NUM_STEPS and runs["a"]["eval_top1"] > 0.2  # chance is 0.1


def test_same_seed_gives_identical_losses_and_weights(runs):
    assert train_losses(runs["dirs"]["a"]) == train_losses(runs["dirs"]["b"])
    step_a, a = saved_state(runs["dirs"]["a"])
    step_b, b = saved_state(runs["dirs"]["b"])
    assert step_a == step_b == NUM_STEPS
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_interrupted_run_resumes_exactly(runs):
    assert runs["stopped"]["step"] == 5 and not runs["stopped"]["preempted"]
    assert "eval_top1" not in runs["stopped"]  # step 5 is not on the evaluation schedule
    assert runs["resumed"]["step"] == NUM_STEPS
    # metrics.jsonl of the resumed run: steps 1..13 once each, equal to the uninterrupted run.
    assert train_losses(runs["dirs"]["resumed"]) == train_losses(runs["dirs"]["a"])
    assert [r["step"] for r in read_lines(runs["dirs"]["resumed"]) if "train_loss" in r] == list(range(1, NUM_STEPS + 1))
    _, a = saved_state(runs["dirs"]["a"])
    _, r = saved_state(runs["dirs"]["resumed"])
    for key in a:
        np.testing.assert_array_equal(a[key], r[key], err_msg=key)
    assert runs["resumed"]["eval_top1"] == runs["a"]["eval_top1"]


@pytest.mark.parametrize("batch_size", [7, 64, 100, 360, 500])
def test_evaluation_counts_every_validation_image_once(runs, digits, batch_size):
    # Pitfall 4: 360 images whatever the batch (padding masked out, nothing dropped).
    from flaxnets.train.evaluate import evaluate_workdir

    original = flaxnets.models.create_model
    flaxnets.models.create_model = create_tiny_model
    try:
        result = evaluate_workdir(runs["dirs"]["a"], digits, batch_size=batch_size)
    finally:
        flaxnets.models.create_model = original
    assert result["eval_count"] == 360
    assert result["step"] == NUM_STEPS
    # Same weights, same images: the same accuracy as the run's own final evaluation.
    assert result["eval_top1"] == pytest.approx(runs["a"]["eval_top1"], abs=1e-9)


def test_the_runs_evaluations_count_360_images(runs):
    evals = [r for r in read_lines(runs["dirs"]["a"]) if "eval_count" in r]
    assert [r["step"] for r in evals] == [6, 12, 13]
    assert all(r["eval_count"] == 360 for r in evals)


ONE_DEVICE_SCRIPT = """
import json, sys
sys.path[:0] = [{here!r}, {src!r}]
import jax
assert jax.device_count() == 1, jax.devices()
import loop_helpers
loop_helpers.train({data!r}, {workdir!r}, stop_after_steps=5)
"""


def test_one_device_gives_the_losses_of_four(runs, digits, tmp_path):
    # Pitfall 11: BatchNorm moments over the global batch, so the device count changes nothing
    # but float summation order. Five steps are enough to see BatchNorm, the loss and the
    # updates agree.
    workdir = tmp_path / "one"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu")
    script = ONE_DEVICE_SCRIPT.format(here=str(HERE), src=str(SRC), data=str(digits), workdir=str(workdir))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert jax.device_count() == 4
    four = train_losses(runs["dirs"]["a"])[:5]
    one = train_losses(workdir)
    assert [s for s, _ in one] == [s for s, _ in four]
    np.testing.assert_allclose([v for _, v in one], [v for _, v in four], rtol=2e-4)


def test_start_summary_is_printed_and_written(runs):
    text = (runs["dirs"]["a"] / "summary.txt").read_text()
    for fact in ("recipe digits_demo", "parameters, 10 classes", "train 1,437 examples, eval 360, 10 classes",
                 "global 32, per device 8 x 1", "4 cpu devices in 1 process", "float32 compute",
                 "44 steps per epoch of 1,437 examples, 13 steps (0.3 epochs)", "fresh start",
                 "augmentation  none, random erasing 0, on the host"):
        assert fact in text, fact
    parameters = int(text.split(" parameters")[0].split(", ")[-1].replace(",", ""))
    assert parameters == 3 * 3 * 3 * 8 + 8 + 2 * 8 + 8 * 8 * 8 * 10 + 10  # TinyNet's conv, BN, head
    resumed = (runs["dirs"]["resumed"] / "summary.txt").read_text()
    assert "resuming from the checkpoint at step 5" in resumed


def test_a_recipe_written_for_other_data_counts_epochs_of_this_data(digits, tmp_path, capsys):
    # ImageNet's count on the digits: 0.023 epoch is 1 step of this data, not 920 of ImageNet's.
    result = train(digits, tmp_path / "run", "train.epochs=0.023", "data.num_train_examples=1281167",
                   stop_after_steps=1)
    assert result["num_steps"] == 1
    err = capsys.readouterr().err
    note = [line for line in err.splitlines() if "num_train_examples" in line]
    assert len(note) == 1 and "1,437 training examples found" in note[0] and "1,281,167" in note[0]
    assert "train.epochs" in note[0]


def test_a_recipe_written_for_imagenet_adapts_to_this_data_and_run(digits, tmp_path, capsys, monkeypatch):
    """ImageNet's 1000 classes and BatchNorm momentum 0.997 on the digits for 13 steps: the model
    is built with the data's 10 classes and a momentum that averages within the run
    (`flaxnets.train.adapt`); the summary (printed and summary.txt) says so, config.json holds
    the adapted values so a resume compares equal, and --init-from weights get their classifier
    replaced (num_classes != 1000 after adapting)."""
    import json

    import flaxnets
    from loop_helpers import config
    from flaxnets.train.loop import train_and_evaluate

    built, loaded = [], []

    def create(name, *, num_classes=1000, rngs=None, **overrides):
        built.append((num_classes, overrides.get("bn_momentum")))
        return create_tiny_model(name, num_classes=num_classes, rngs=rngs, **overrides)

    monkeypatch.setattr(flaxnets.models, "create_model", create)
    monkeypatch.setattr(flaxnets, "load_weights", lambda model, path, **kwargs: loaded.append(kwargs))
    recipe = config("model.num_classes=1000", "model.bn_momentum=0.997")
    workdir = tmp_path / "run"
    train_and_evaluate(recipe, data_dir=str(digits), workdir=str(workdir), init_from="imagenet.safetensors",
                       stop_after_steps=5)
    assert built == [(10, 0.5)] and loaded == [{"skip_classifier": True}]
    lines = ["adapted: model.num_classes 1000 -> 10 (the training data's class folders); "
             "train.adapt_to_data=false keeps 1000",
             "adapted: model.bn_momentum 0.997 -> 0.5: 0.997 averages BatchNorm statistics over ~333 steps and "
             f"this run has {NUM_STEPS} (evaluation would see statistics weighted toward the run's start); "
             "train.adapt_to_data=false keeps 0.997"]
    err = capsys.readouterr().err
    summary = (workdir / "summary.txt").read_text()
    for line in lines:
        assert line in err.splitlines() and line in summary.splitlines()
    assert "the model has" not in summary  # the outputs match the classes now
    saved = json.loads((workdir / "config.json").read_text())["model"]
    assert (saved["num_classes"], saved["bn_momentum"]) == (10, 0.5)
    # Resuming the same recipe adapts the same way: config.json compares equal, no refusal.
    result = train_and_evaluate(recipe, data_dir=str(digits), workdir=str(workdir))
    assert result["step"] == NUM_STEPS and built[-1] == (10, 0.5) and len(loaded) == 1

    # Switched off, the recipe is kept verbatim and the summary says the outputs differ.
    verbatim = tmp_path / "verbatim"
    train_and_evaluate(config("model.num_classes=1000", "model.bn_momentum=0.997", "train.adapt_to_data=false"),
                       data_dir=str(digits), workdir=str(verbatim), stop_after_steps=1)
    assert built[-1] == (1000, 0.997)
    summary = (verbatim / "summary.txt").read_text()
    assert "adapted:" not in summary and "10 classes (the model has 1000 outputs)" in summary

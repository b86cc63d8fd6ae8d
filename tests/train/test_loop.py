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


CTRL_C_SCRIPT = """
import signal, sys, time
# Ctrl-C as a terminal's foreground job has it: a suite started in the background of a
# non-interactive shell hands its children SIGINT ignored, which flaxnets then leaves alone.
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path[:0] = [{here!r}, {src!r}]
import flaxnets.models, flaxnets.train.loop as loop, loop_helpers
from flaxnets import cli

flaxnets.models.create_model = loop_helpers.create_tiny_model
build = loop.train_step_from_config


def slow_from_step_3(*args, **kwargs):
    # Steps 3 on take a second, so the test's Ctrl-C lands inside step 3 whatever the machine.
    step, calls = build(*args, **kwargs), [0]

    def slow(state, batch):
        out = step(state, batch)
        calls[0] += 1
        if calls[0] >= 3:
            if calls[0] == 3:
                open({marker!r}, "w").close()  # the test presses Ctrl-C now, inside step 3
            time.sleep(1.0)
        return out
    return slow


loop.train_step_from_config = slow_from_step_3
sets = [a for s in loop_helpers.OVERRIDES for a in ("--set", s)]
sys.exit(cli.main(["train", "--recipe", "digits_demo", "--data", {data!r}, "--workdir", {workdir!r}, *sets]))
"""


def _ctrl_c(digits, workdir, presses):
    """Run `flaxnets train` (tiny network, steps 3 on slowed) in a subprocess and press Ctrl-C
    `presses` times once step 3 has started (its one-second wait); returns (status, stdout,
    stderr, seconds from the last press to exit)."""
    import signal
    import time

    marker = workdir.parent / f"{workdir.name}-in-step-3"
    script = CTRL_C_SCRIPT.format(here=str(HERE), src=str(SRC), data=str(digits), workdir=str(workdir),
                                  marker=str(marker))
    proc = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ, JAX_PLATFORMS="cpu"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    for i in range(presses):
        time.sleep(0.2 * i)
        proc.send_signal(signal.SIGINT)
    pressed = time.monotonic()
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err, time.monotonic() - pressed


def test_ctrl_c_saves_says_how_to_resume_exits_130_and_the_rerun_resumes_exactly(runs, digits, tmp_path):
    """Issue 21: a Ctrl-C (SIGINT) is a preemption: the step in progress finishes, a checkpoint
    is saved, the message names the step and how to resume, the CLI exits 130; the rerun then
    gives exactly the uninterrupted run's losses and weights."""
    workdir = tmp_path / "run"
    status, out, err, _ = _ctrl_c(digits, workdir, presses=1)
    assert status == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert f"Ctrl-C: saved a checkpoint at step 3 in {workdir}; rerun the same command to resume" in err, err[-3000:]
    assert "flaxnets train: interrupted by Ctrl-C after saving a checkpoint" in out and "step 3/13" in out, out
    assert saved_state(workdir)[0] == 3
    resumed = train(digits, workdir)
    assert resumed["step"] == NUM_STEPS and resumed["preempted"] is None
    assert train_losses(workdir) == train_losses(runs["dirs"]["a"])
    _, a = saved_state(runs["dirs"]["a"])
    _, r = saved_state(workdir)
    for key in a:
        np.testing.assert_array_equal(a[key], r[key], err_msg=key)


def test_a_second_ctrl_c_stops_at_once_with_one_line(digits, tmp_path):
    """Issue 21: a second Ctrl-C does not wait for the step or the save: one line saying
    nothing was saved (no traceback), status 130, within seconds."""
    workdir = tmp_path / "run"
    status, out, err, took = _ctrl_c(digits, workdir, presses=2)
    assert status == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if "Ctrl-C" in line]
    assert lines == ["flaxnets train: second Ctrl-C: stopped at once at step 2 without saving; "
                     "no checkpoint was saved"], err[-3000:]
    assert not (workdir / "checkpoints").exists() or not any(p.name.isdigit() for p in (workdir / "checkpoints").iterdir())
    assert took < 30, f"the second Ctrl-C took {took:.1f} s to stop the run"


def test_rerunning_a_finished_run_says_so_and_trains_nothing(runs, digits, capsys):
    """Issue 21: the rerun of a finished run compiled and evaluated it again; now it prints one
    line with the last logged evaluation and how to evaluate again, and touches no file."""
    workdir = runs["dirs"]["a"]
    before = {p: p.stat().st_mtime_ns for p in workdir.rglob("*") if p.is_file()}
    capsys.readouterr()
    result = train(digits, workdir)
    err = capsys.readouterr().err
    assert result["finished_before"] is True and result["preempted"] is None
    assert (result["step"], result["num_steps"], result["eval_step"]) == (NUM_STEPS, NUM_STEPS, NUM_STEPS)
    assert result["eval_top1"] == runs["a"]["eval_top1"] and result["eval_count"] == 360
    assert err == (f"flaxnets train: {workdir} already finished (step 13/13, eval_top1 {runs['a']['eval_top1']:.4f} "
                   f"at step 13 from metrics.jsonl); evaluate again with `flaxnets eval --workdir {workdir} "
                   f"--data {digits}`, or train again into a new --workdir\n")
    assert {p: p.stat().st_mtime_ns for p in workdir.rglob("*") if p.is_file()} == before


def test_rate_and_eta_leave_out_the_compile_and_evaluations(digits, tmp_path, capsys, monkeypatch):
    """Issue 21: the rate included compile and evaluation time (the demo ended at 235 img/s
    against a steady 580) and the ETA at step 1 said hours. With every evaluation taking 3 s
    more, the logged images_per_second and the progress line's rate stay those of training
    steps; step 1 (the compile) has no rate and no ETA, and says what it is doing."""
    import flaxnets.train.loop as loop

    evaluate = loop.evaluate_state

    def slow_evaluation(*args, **kwargs):
        import time

        time.sleep(3.0)
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate_state", slow_evaluation)
    train(digits, tmp_path / "run", stop_after_steps=8)  # evaluates at step 6
    lines = {r["step"]: r for r in read_lines(tmp_path / "run")}
    assert "images_per_second" not in lines[1]  # the compiling step alone: no steady-state rate
    rates = [lines[s]["images_per_second"] for s in range(2, 9)]
    assert min(rates) > 16, rates  # 32 images over 3 s of evaluation would be under 11
    err = capsys.readouterr().err.splitlines()
    assert err.index("step 1: compiling the train step (this first step takes longer) ...") < \
        next(i for i, l in enumerate(err) if l.startswith("step 1: done in "))
    shown = {int(l.split(" step ")[1].split("/")[0]): l for l in err if l.startswith("[")}
    assert " ? img/s " in shown[1] and shown[1].split(" eta ")[1].startswith("?")
    assert "step 6: evaluating 360 images (the first evaluation compiles the eval step) ..." in err
    # The line's rate is over every step since step 1, so it is no lower than the slowest
    # logged interval (a third of it allows for the time between intervals); counting the 3 s
    # evaluation would make it under 6 * 32 / 3 = 64.
    shown_rate = float(shown[7].split(" img/s")[0].split()[-1].replace(",", ""))
    assert shown_rate > min(rates) / 3 and shown_rate > 64, (shown[7], rates)


def test_skipped_training_files_are_counted_once_at_the_end(tmp_path, capsys):
    """Issue 21: a zero-byte and a truncated JPEG among the training files are each named once
    on stderr while training, and the run ends with one line counting them."""
    from bad_files import UNDECODABLE, reported, write_good_images, write_odd_files

    data = tmp_path / "data"
    write_good_images(data / "train" / "a", 10)
    odd = write_odd_files(data / "train" / "a")
    write_good_images(data / "train" / "b", 10, seed=1)
    for name in ("a", "b"):
        write_good_images(data / "val" / name, 4, seed=2)
    capsys.readouterr()
    # 24 training files at batch 8: every file is read in each of the 3 epochs.
    result = train(data, tmp_path / "run", "train.global_batch_size=8", "train.epochs=3")
    assert result["step"] == 9
    err = capsys.readouterr().err
    assert sorted(reported(err)) == sorted(str(odd[name]) for name in UNDECODABLE)
    notes = [line for line in err.splitlines() if "skipped in training" in line]
    assert notes == ["note: 2 undecodable images skipped in training (each named above); "
                     "another image of the epoch took each one's place"], err[-2000:]


def test_the_runs_own_evaluation_labels_a_subset_val_folder_by_class_name(digits, tmp_path, monkeypatch):
    """Issue 21: a val/ holding only the classes 3 and 7 was labelled 0 and 1 (folder order) by
    the training loop's evaluation, so it scored a good model at 0%; it is labelled as the
    training data numbers its classes, as `flaxnets eval` does. A class the training data does
    not have is one line naming it, before anything is written."""
    import shutil

    from flaxnets.errors import FlaxnetsError
    from flaxnets.train import loop

    data = tmp_path / "data"
    shutil.copytree(digits / "train", data / "train")
    for name in ("3", "7"):
        shutil.copytree(digits / "val" / name, data / "val" / name)
    seen = []
    original = loop.data_lib.eval_loader_from_config

    def capture(data_config, prep, source, **kwargs):
        if isinstance(source, (str, os.PathLike)):
            source = loop.data_lib.open_source(source, "val")
        seen.append(sorted({source[i][1] for i in range(len(source))}))
        return original(data_config, prep, source, **kwargs)

    monkeypatch.setattr(loop.data_lib, "eval_loader_from_config", capture)
    train(data, tmp_path / "run", stop_after_steps=1)
    assert seen == [[3, 7]]

    shutil.copytree(digits / "val" / "3", data / "val" / "cat")
    with pytest.raises(FlaxnetsError, match=r"class 'cat' is not among the 10 classes of the training data"):
        train(data, tmp_path / "other", stop_after_steps=1)
    assert not (tmp_path / "other").exists()


def test_init_from_a_run_starts_from_its_weights_and_replaces_a_classifier_of_another_class_count(
        runs, digits, tmp_path, monkeypatch):
    """`--init-from WORKDIR` (issue 24: a float run fine-tuned with quant.mode=qat) copies the
    run's weights and BatchNorm statistics by path; a model with another class count gets every
    array but the classifier's; another architecture is one line."""
    from flax import nnx

    from flaxnets.errors import FlaxnetsError
    from flaxnets.train.restore import load_run_weights

    monkeypatch.setattr(flaxnets.models, "create_model", create_tiny_model)
    run = runs["dirs"]["a"]
    _, saved = saved_state(run)

    def flat(model):
        return {"/".join(map(str, p)): np.asarray(v.value) for p, v in nnx.to_flat_state(nnx.state(model, (nnx.Param, nnx.BatchStat)))}

    same = create_tiny_model("x", num_classes=10, rngs=nnx.Rngs(7))
    said = load_run_weights(same, run)
    assert said == f"the raw weights of {run} at step {NUM_STEPS}"
    got = flat(same)
    assert got.keys() == {"conv/kernel", "conv/bias", "bn/scale", "bn/bias", "bn/mean", "bn/var", "head/kernel", "head/bias"}
    for key, value in got.items():
        layer, leaf = key.split("/")
        section = "batch_stats" if leaf in ("mean", "var") else "params"
        np.testing.assert_array_equal(value, saved[f"['{section}']['{layer}']['{leaf}']['value']"], err_msg=key)

    other = create_tiny_model("x", num_classes=4, rngs=nnx.Rngs(7))
    fresh = flat(other)
    said = load_run_weights(other, run)
    assert said.endswith("with a new classifier (10 -> 4 classes)")
    got = flat(other)
    for key in got:
        if key.startswith("head/"):
            np.testing.assert_array_equal(got[key], fresh[key], err_msg=key)  # left as initialised
        else:
            assert not np.array_equal(got[key], fresh[key]) or key.startswith("bn/"), key

    class Wider(nnx.Module):
        def __init__(self):
            self.conv = nnx.Linear(3, 4, rngs=nnx.Rngs(0))

    with pytest.raises(FlaxnetsError, match=r"--init-from .* is not this run's Wider"):
        load_run_weights(Wider(), run)

    # Through the loop: a quantization-aware fine-tune of the float run.
    from loop_helpers import config
    from flaxnets.train.loop import train_and_evaluate

    qat = tmp_path / "qat"
    train_and_evaluate(config("quant.mode=qat"), data_dir=str(digits), workdir=str(qat), init_from=str(run),
                       stop_after_steps=1)
    assert f"fresh start from the raw weights of {run} at step {NUM_STEPS}" in (qat / "summary.txt").read_text()

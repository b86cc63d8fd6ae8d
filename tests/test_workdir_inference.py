"""A run fine-tuned from an imported weights file, then used: `flaxnets train --init-from`,
`flaxnets predict --workdir` and `flaxnets export --workdir`.

One short digits_demo run (mobilenet_v3_small, 2 steps, EMA on) is shared by the module: it starts
from a timm-layout state dict of 1000 classes written by the test, so the classifier is replaced
by a 10-class one. The reference logits are computed from the checkpoint read with Orbax alone
(not through flaxnets' restore code) and the images read with Pillow alone.
"""

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx
from weights.weights_helpers import build, forward

import flaxnets
from flaxnets.cli import main

RUN_STEPS = 2


@pytest.fixture(scope="module")
def finetuned(digits, tmp_path_factory):
    """Train digits_demo for 2 steps from a random timm-layout file; record what the loader put
    into the model before the first step."""
    from safetensors.numpy import load_file, save_file

    from flaxnets.weights.torch import export_state_dict

    folder = tmp_path_factory.mktemp("finetune")
    weights = folder / "mobilenetv3_small_100.safetensors"
    save_file(export_state_dict(build("mobilenet_v3_small", 5), "timm"), str(weights))

    loaded = {}
    original = flaxnets.load_weights

    def recording_load_weights(model, path, **kwargs):
        info = original(model, path, **kwargs)
        # Copies: the model's buffers are donated to the first train step.
        loaded.update(kwargs=kwargs, stem_kernel=np.array(model.stem_conv.kernel.value),
                      classifier_kernel=np.array(model.classifier.kernel.value))
        return info

    from flaxnets.train import loop

    original_train = loop.train_and_evaluate

    def recording_train(*args, **kwargs):
        result = original_train(*args, **kwargs)
        loaded.update(result=result)
        return result

    workdir = folder / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(flaxnets, "load_weights", recording_load_weights)
        patch.setattr(loop, "train_and_evaluate", recording_train)
        status = main(["train", "--recipe", "digits_demo", "--data", str(digits), "--workdir", str(workdir),
                       "--init-from", str(weights), "--max-steps", str(RUN_STEPS),
                       "--set", "train.global_batch_size=32", "--set", "ema.decay=0.99",
                       "--set", f"eval.every_steps={RUN_STEPS}"])
    assert status == 0
    # The reference is the file as written (read back, so no array shares memory with JAX).
    return {"workdir": workdir, "state_dict": load_file(str(weights)), "loaded": loaded}


def _saved_state(workdir):
    """The saved train state as nested dicts of arrays, read by Orbax without a target."""
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer().restore(Path(workdir).absolute() / "checkpoints" / str(RUN_STEPS) / "state")


def _reference_logits(workdir, images, *, ema: bool):
    """Logits of the saved raw or EMA weights on `images` (uint8 NHWC), normalised as the recipe says."""
    from flaxnets.models import create_model

    saved = _saved_state(workdir)
    model = nnx.eval_shape(lambda: create_model("mobilenet_v3_small", num_classes=10, bn_momentum=0.9,
                                                dropout_rate=0.1, stochastic_depth_rate=0.0))
    params = saved["ema_params" if ema else "params"]
    for kind, tree in ((nnx.Param, params), (nnx.BatchStat, saved["batch_stats"])):
        for path, var in nnx.to_flat_state(nnx.state(model, kind)):
            node = tree
            for key in path:
                node = node[str(key)]
            var.value = jax.numpy.asarray(node["value"])
    x = (images.astype(np.float32) - 127.5) / 127.5  # digits_demo: mean = std = 127.5
    return forward(model, x)


@pytest.fixture(scope="module")
def reference(finetuned, digit_images):
    """{True: EMA logits, False: raw logits} of the three digit images."""
    return {ema: _reference_logits(finetuned["workdir"], digit_images[1], ema=ema) for ema in (True, False)}


@pytest.fixture(scope="module")
def digit_images(digits):
    from PIL import Image

    paths = [sorted((digits / "val" / str(c)).iterdir())[0] for c in (0, 3, 7)]
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    assert pixels.shape == (3, 32, 32, 3)
    return [str(p) for p in paths], pixels


@pytest.mark.slow
def test_init_from_loads_the_file_and_replaces_the_classifier(finetuned):
    loaded, state_dict = finetuned["loaded"], finetuned["state_dict"]
    # Before any step: the stem is the file's (OIHW -> HWIO), the 1000-class head was skipped.
    assert loaded["kwargs"] == {"skip_classifier": True}
    file_stem = state_dict["conv_stem.weight"].transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(loaded["stem_kernel"], file_stem)
    assert state_dict["classifier.weight"].shape == (1000, 1024)
    assert loaded["classifier_kernel"].shape == (1024, 10)

    # After 2 warm-up steps (learning rate ~1e-5) the saved weights are still the file's, nearly.
    saved = _saved_state(finetuned["workdir"])
    assert int(saved["step"]) == RUN_STEPS
    stem = np.asarray(saved["params"]["stem_conv"]["kernel"]["value"])
    assert 0 < np.abs(stem - file_stem).max() < 1e-3 < np.abs(file_stem).max()
    assert np.asarray(saved["params"]["classifier"]["kernel"]["value"]).shape == (1024, 10)
    assert json.loads((finetuned["workdir"] / "class_names.json").read_text()) == [str(c) for c in range(10)]


@pytest.mark.slow
def test_predict_workdir_uses_the_ema_weights_and_the_runs_preprocessing(finetuned, digit_images, reference, capsys):
    paths, _ = digit_images
    workdir = str(finetuned["workdir"])
    for flags, ema in (([], True), (["--no-ema"], False)):
        assert main(["predict", "--workdir", workdir, "--json", "--top-k", "10", *flags, *paths]) == 0
        captured = capsys.readouterr()
        assert ("EMA weights" in captured.err) == ema and f"checkpoint step {RUN_STEPS}" in captured.err
        out = json.loads(captured.out)
        expected = jax.nn.softmax(reference[ema], axis=-1)
        assert [r["path"] for r in out] == paths
        for result, want in zip(out, np.asarray(expected)):
            top = result["top5"]
            assert len(top) == 10 and abs(sum(t["prob"] for t in top) - 1) < 1e-5
            assert [t["name"] for t in top] == [str(t["class_id"]) for t in top]  # the class folders
            probs = np.array([t["prob"] for t in top])
            np.testing.assert_allclose(probs, want[[t["class_id"] for t in top]], rtol=1e-4, atol=1e-6)
            assert np.all(np.diff(probs) <= 0)
    # EMA (decay ~0.1-0.2 after 2 steps) and raw weights differ: the flag chose between them.
    assert not np.allclose(reference[True], reference[False])


@pytest.mark.slow
def test_export_workdir_matches_jax_in_onnxruntime(finetuned, digit_images, reference, tmp_path, capsys):
    import onnxruntime as ort

    _, pixels = digit_images
    out = tmp_path / "digits.onnx"
    assert main(["export", "--workdir", str(finetuned["workdir"]), "--format", "onnx", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "[batch, 32, 32, 3]" in text and "(127.5, 127.5, 127.5)" in text
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = (pixels.astype(np.float32) - 127.5) / 127.5
    got = session.run(["logits"], {"input": x})[0]
    want = reference[True]
    assert got.shape == want.shape == (3, 10)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


@pytest.mark.slow
def test_eval_workdir_reproduces_the_runs_own_evaluation(finetuned, digits):
    from flaxnets.train.evaluate import evaluate_workdir

    final = finetuned["loaded"]["result"]  # the evaluation the run ended with
    result = evaluate_workdir(finetuned["workdir"], digits, batch_size=180)
    assert result["step"] == RUN_STEPS and result["eval_count"] == 360
    for key in ("eval_top1", "eval_top5", "eval_ema_top1", "eval_ema_top5"):
        assert result[key] == pytest.approx(final[key], abs=1e-9), key


def _subset_folder(digits, root, classes):
    """root/val/<c> for each class c: copies of digits' validation images; returns (paths, labels)."""
    import shutil

    for c in classes:
        shutil.copytree(digits / "val" / c, root / "val" / c)
    paths = sorted((root / "val").rglob("*.png"))
    return paths, np.asarray([int(p.parent.name) for p in paths])


@pytest.mark.slow
def test_eval_on_a_subset_of_the_classes_scores_as_on_the_same_images_in_the_full_folder(finetuned, digits, tmp_path):
    """val/ holding only 3/ and 7/: folder order would label them 0 and 1; the run's class names
    file labels them 3 and 7, so each image is scored as in the full folder (against logits
    computed without flaxnets' restore or loader)."""
    from PIL import Image

    from flaxnets.train.evaluate import evaluate_workdir

    paths, labels = _subset_folder(digits, tmp_path / "subset", ["3", "7"])
    result = evaluate_workdir(finetuned["workdir"], tmp_path / "subset", batch_size=80)
    assert result["eval_count"] == len(paths) > 60
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    folder_order = (labels == 7).astype(int)  # what labelling by folder position would say
    for ema, prefix in ((False, "eval_"), (True, "eval_ema_")):
        logits = _reference_logits(finetuned["workdir"], pixels, ema=ema)
        top5 = np.argsort(-logits, axis=-1)[:, :5]
        assert result[prefix + "top1"] == pytest.approx(np.mean(logits.argmax(-1) == labels), abs=1e-9)
        assert result[prefix + "top5"] == pytest.approx(np.mean((top5 == labels[:, None]).any(-1)), abs=1e-9)
        # The premise: the two labellings score differently on these weights.
        assert np.mean((top5 == labels[:, None]).any(-1)) != np.mean((top5 == folder_order[:, None]).any(-1))


def test_eval_of_a_class_the_run_does_not_know_is_one_line(finetuned, digits, tmp_path, capsys, monkeypatch):
    from flaxnets.train import evaluate

    _subset_folder(digits, tmp_path / "other", ["3"])
    (tmp_path / "other" / "val" / "3").rename(tmp_path / "other" / "val" / "cat")
    monkeypatch.setattr(evaluate, "restore_run", lambda *a, **k: pytest.fail("the checkpoint was read"))
    assert main(["eval", "--workdir", str(finetuned["workdir"]), "--data", str(tmp_path / "other")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "class 'cat' is not among the 10 classes of the run" in err, err


@pytest.mark.parametrize("command", ["predict", "export"])
@pytest.mark.parametrize("flags, message", [
    (["--workdir", "run", "--model", "mobilenet_v3_small", "--weights", "w.pth"], "not both"),
    ([], "give either --workdir DIR or --model NAME with --weights FILE"),
    (["--model", "mobilenet_v3_small"], "--model needs --weights FILE"),
    (["--weights", "w.pth"], "--weights needs --model NAME"),
    (["--model", "mobilenet_v3_small", "--weights", "w.pth", "--no-ema"], "need --workdir"),
])
def test_weights_source_flags_are_checked_before_loading(command, flags, message, tmp_path, capsys):
    extra = ["--out", str(tmp_path / "m.onnx")] if command == "export" else ["image.png"]
    assert main([command, *flags, *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "m.onnx").exists()


def _an_image(folder):
    """A real image file: predict checks its paths before it reads the work directory."""
    from PIL import Image

    path = folder / "image.png"
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(path)
    return str(path)


def test_workdir_without_a_run_is_one_line(tmp_path, capsys):
    assert main(["predict", "--workdir", str(tmp_path), _an_image(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no config.json" in err


def test_a_checkpoint_of_another_layout_is_one_line_and_left_in_place(finetuned, tmp_path, capsys):
    """A work directory whose checkpoint does not hold the train state its config.json builds
    (here: the config edited to another optimizer, whose state has another layout; in practice a
    run saved by an older flaxnets)."""
    import json
    import shutil

    workdir = tmp_path / "run"
    shutil.copytree(finetuned["workdir"], workdir)
    config = json.loads((workdir / "config.json").read_text())
    config["optimizer"]["name"] = "sgd"
    config["optimizer"] = {k: v for k, v in config["optimizer"].items()
                           if k in ("name", "weight_decay", "weight_decay_exclude", "l2", "l2_exclude", "grad_clip_norm")}
    config["optimizer"]["weight_decay"] = 0.0
    (workdir / "config.json").write_text(json.dumps(config))
    image = _an_image(tmp_path)  # beside the work directory, not in it
    before = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    assert main(["predict", "--workdir", str(workdir), image]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not match the train state" in err[0], err
    assert sorted(p.relative_to(workdir) for p in workdir.rglob("*")) == before

"""`flaxnets predict` and `flaxnets export` on the command line, with weights written by the test."""

import json

import numpy as np
import pytest
from weights.weights_helpers import build

from flaxnets.cli import main
from flaxnets.weights.torch import export_state_dict


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    from safetensors.numpy import save_file

    path = tmp_path_factory.mktemp("w") / "mobilenetv3_small_100.safetensors"
    save_file(export_state_dict(build("mobilenet_v3_small", 7, padding="symmetric")), str(path))
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image
    from skimage import data

    folder = tmp_path_factory.mktemp("img")
    paths = [folder / "cat.jpg", folder / "coffee.png"]
    Image.fromarray(data.chelsea()).save(paths[0])
    Image.fromarray(data.coffee()).save(paths[1])
    return [str(p) for p in paths]


def test_predict_json(weights_file, images, capsys):
    argv = ["predict", "--model", "mobilenet_v3_small", "--weights", str(weights_file), "--json",
            "--resolution", "64", *images]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in out] == images
    for result in out:
        assert set(result) == {"path", "top5"}
        assert len(result["top5"]) == 5
        assert all(set(t) == {"class_id", "name", "prob"} for t in result["top5"])
        probs = [t["prob"] for t in result["top5"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert all(isinstance(t["name"], str) and t["name"] for t in result["top5"])


@pytest.mark.slow
def test_predict_text_and_bad_image(weights_file, images, tmp_path, capsys):
    argv = ["predict", "--model", "mobilenet_v3_small", "--weights", str(weights_file), "--resolution", "64"]
    assert main(argv + images[:1]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == images[0] and len(lines) == 6
    bad = tmp_path / "not_an_image.jpg"
    bad.write_text("text")
    assert main(argv + [str(bad)]) == 1
    assert "cannot read image" in capsys.readouterr().err


@pytest.mark.slow
def test_export_command_writes_onnx(weights_file, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    argv = ["export", "--model", "mobilenet_v3_small", "--weights", str(weights_file), "--format", "onnx",
            "--out", str(out), "--resolution", "64", "--check"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert out.is_file()
    difference = float(text.split("relative difference: ")[1])
    assert difference < 1e-4


@pytest.mark.slow
def test_predict_and_eval_give_the_same_logits(weights_file, images, tmp_path, monkeypatch, capsys):
    # One evaluation path: predict decodes the file with the eval transform and runs the eval
    # step that `flaxnets eval` runs, so the same image and weights give the same logits.
    import shutil

    from flaxnets.train import evaluate

    folder = tmp_path / "data" / "val" / "cat"
    folder.mkdir(parents=True)
    shutil.copy(images[0], folder / "cat.jpg")
    recorded = []
    original = evaluate.make_eval_step

    def recording_make_eval_step(*args, **kwargs):
        step = original(*args, **kwargs)

        def recording_step(*step_args):
            out = step(*step_args)
            mask = np.asarray(step_args[-1]["mask"])
            recorded.append(np.asarray(out["logits"])[mask])
            return out

        return recording_step

    monkeypatch.setattr(evaluate, "make_eval_step", recording_make_eval_step)
    source = ["--model", "mobilenet_v3_small", "--weights", str(weights_file)]
    assert main(["predict", *source, "--json", images[0]]) == 0
    assert main(["eval", *source, "--data", str(tmp_path / "data"), "--batch-size", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["eval_count"] == 1
    predicted, evaluated = recorded
    assert predicted.shape == evaluated.shape == (1, 1000)
    np.testing.assert_allclose(predicted, evaluated, rtol=0, atol=1e-6)


def test_evaluation_crops_as_the_reference_of_its_run_or_weights():
    """A run is evaluated with its own data.crop flavour (centre-crop arithmetic and resize of its
    reference); imported weights with the pipeline that evaluated them at their source."""
    from flaxnets.models import get_spec
    from flaxnets.recipes import load_recipe
    from flaxnets.train.from_config import resolve_preprocessing

    assert resolve_preprocessing(load_recipe("efficientnet_b0_tpu"))["crop"] == "tf_tpu"
    assert resolve_preprocessing(load_recipe("mobilenet_v3_large_paper"))["crop"] == "inception"
    assert resolve_preprocessing(load_recipe("mobilenet_v3_large_tfvision"))["crop"] == "tf_vision"
    assert get_spec("efficientnet_lite0").eval_crop == "tf_tpu"  # TF-TPU checkpoints
    assert get_spec("mobilenet_v3_large").eval_crop == "inception"  # TF-slim checkpoints
    assert get_spec("mobilenet_v4_conv_medium").eval_crop == "tf_vision"

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
    assert "cannot decode image" in capsys.readouterr().err


@pytest.mark.slow
def test_predict_skips_undecodable_images_and_classifies_the_rest(weights_file, images, tmp_path, capsys):
    from bad_files import DECODABLE, UNDECODABLE, reported, write_odd_files

    odd = write_odd_files(tmp_path / "odd")
    paths = [str(odd["zero.jpg"]), images[0], str(odd["truncated.jpg"]), str(odd["png_named.jpg"]),
             str(odd["cmyk.jpg"]), images[1]]
    argv = ["predict", "--model", "mobilenet_v3_small", "--weights", str(weights_file), "--resolution", "64",
            "--top-k", "2", *paths]
    assert main(argv) == 0
    captured = capsys.readouterr()
    good = [p for p in paths if p not in {str(odd[n]) for n in UNDECODABLE}]
    assert len(good) == 2 + len(DECODABLE)
    lines = captured.out.splitlines()
    assert lines[::3] == good and len(lines) == 3 * len(good)  # each path, then its 2 classes
    assert reported(captured.err) == [str(odd[n]) for n in ("zero.jpg", "truncated.jpg")]
    assert "2 of 6 images skipped as undecodable (above); the other 4 classified" in captured.err
    assert main([*argv, "--json"]) == 0
    assert [r["path"] for r in json.loads(capsys.readouterr().out)] == good


def test_predict_checks_paths_before_loading_the_model(images, tmp_path, capsys, monkeypatch):
    from flaxnets.commands import predict

    monkeypatch.setattr(predict, "load_source", lambda *a, **k: pytest.fail("the model was loaded"))
    source = ["--model", "mobilenet_v3_small", "--weights", str(tmp_path / "w.safetensors")]
    missing = str(tmp_path / "typo.jpg")
    assert main(["predict", *source, images[0], missing]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"image {missing} does not exist; expected an image file" in err
    assert main(["predict", *source, str(tmp_path)]) == 1
    assert "is a folder" in capsys.readouterr().err


def test_mean_and_std_take_commas_as_set_does(images, tmp_path, capsys, monkeypatch):
    from flaxnets.commands.predict import parse_channels
    from flaxnets.config import apply_overrides
    from flaxnets.errors import UsageError
    from flaxnets.recipes import load_recipe

    given = "123.675,116.28,103.53"
    assert parse_channels("--mean", given) == apply_overrides(load_recipe("digits_demo"),
                                                              [f"data.mean={given}"]).data.mean
    assert parse_channels("--std", "(58.4, 57.1, 57.4)") == (58.4, 57.1, 57.4)
    assert parse_channels("--mean", None) is None
    for text in ("1,2", "1,2,3,4", "a,b,c", "1"):
        with pytest.raises(UsageError, match="expected three comma-separated numbers"):
            parse_channels("--mean", text)
    # On the command line the check comes before anything is loaded; the old three-word form
    # (`--mean 1 2 3 IMAGE`) fails on its first word with the comma form named.
    monkeypatch.setattr("flaxnets.commands.predict.load_source", lambda *a, **k: pytest.fail("loaded"))
    source = ["predict", "--model", "mobilenet_v3_small", "--weights", str(tmp_path / "w.safetensors")]
    assert main([*source, "--mean", "1", "2", "3", images[0]]) == 2
    assert "--mean 1: expected three comma-separated numbers, e.g. --mean 123.7,116.3,103.5" in capsys.readouterr().err


def test_predict_help_names_top_k_not_top_5(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = capsys.readouterr().out
    assert "--top-k" in text and "top-5" not in text and "top5 holding the --top-k classes" in " ".join(text.split())


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

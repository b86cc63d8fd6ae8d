"""`flaxnets train` and `flaxnets eval` from the command line: input errors are one line and
touch nothing; a trained run and an imported weights file are evaluated over every image."""

import json
import re
import sys
from pathlib import Path

import pytest

import flaxnets.models
from flaxnets import cli

sys.path.insert(0, str(Path(__file__).resolve().parent / "train"))
from loop_helpers import OVERRIDES, create_tiny_model  # noqa: E402  (the loop tests' tiny network)


def sets(*items):
    return [arg for item in items for arg in ("--set", item)]


def test_unknown_set_key_exits_2_with_a_suggestion_before_writing(digits, tmp_path, capsys):
    workdir = tmp_path / "run"
    status = cli.main(["train", "--recipe", "digits_demo", "--data", str(digits), "--workdir", str(workdir),
                       *sets("train.global_batch_sise=32")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "train.global_batch_sise" in err
    assert "train.global_batch_size" in err  # the suggestion
    assert not workdir.exists()


def test_missing_data_dir_exits_1_with_one_line(tmp_path, capsys):
    workdir = tmp_path / "run"
    missing = tmp_path / "no-such-data"
    status = cli.main(["train", "--recipe", "digits_demo", "--data", str(missing), "--workdir", str(workdir)])
    err = capsys.readouterr().err
    assert status == 1
    assert err.count("\n") == 1 and str(missing) in err and "does not exist" in err
    assert not workdir.exists()


def test_batch_not_divisible_by_device_count_exits_with_one_line(digits, tmp_path, capsys):
    # conftest gives 4 devices; 30 examples cannot be split over them.
    status = cli.main(["train", "--recipe", "digits_demo", "--data", str(digits), "--workdir", str(tmp_path / "run"),
                       *sets("train.global_batch_size=30")])
    err = capsys.readouterr().err
    assert status == 1
    assert err.count("\n") == 1
    assert "train.global_batch_size=30 is not divisible by 4 devices" in err
    assert not (tmp_path / "run").exists()  # issue 21: no empty work directory left behind


def test_a_data_error_leaves_no_work_directory(tmp_path):
    """Issue 21: the work directory is created only once the data loaders are built, so a data
    set with no images fails with nothing left behind (the library path, past the CLI's checks)."""
    from loop_helpers import train

    from flaxnets.errors import FlaxnetsError

    for split in ("train/a", "val/a"):
        (tmp_path / "data" / split).mkdir(parents=True)
    workdir = tmp_path / "new" / "run"
    with pytest.raises(FlaxnetsError):
        train(tmp_path / "data", workdir)
    assert not (tmp_path / "new").exists()


def test_a_workdir_that_is_a_file_is_named_as_one(digits, tmp_path, capsys):
    """Issue 21: it said "not writable: File exists"."""
    path = tmp_path / "x"
    path.write_text("notes")
    status = cli.main(["train", "--recipe", "digits_demo", "--data", str(digits), "--workdir", str(path)])
    err = capsys.readouterr().err
    assert status == 1
    assert err == (f"flaxnets train: error: --workdir {str(path)!r} is a file; expected a directory "
                   "(a new one, or an existing run's)\n")
    assert path.read_text() == "notes"


@pytest.mark.slow
def test_eval_of_a_trained_workdir_prints_top1_over_360_images(digits, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(flaxnets.models, "create_model", create_tiny_model)
    workdir = tmp_path / "run"
    status = cli.main(["train", "--recipe", "digits_demo", "--data", str(digits), "--workdir", str(workdir),
                       "--max-steps", "3", *sets(*OVERRIDES)])
    out = capsys.readouterr().out
    assert status == 0
    assert "preempted" not in out and "stopped at --max-steps 3" in out and "step 3/13;" in out
    assert "eval_top1" not in out  # step 3 is not an evaluation step: no extra evaluation

    assert cli.main(["eval", "--workdir", str(workdir), "--data", str(digits), "--batch-size", "64"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"top-1 \d+\.\d\d%  top-5 \d+\.\d\d%  over 360 images  \[checkpoint step 3\]", out), out


@pytest.mark.slow
def test_eval_of_a_timm_layout_weights_file_counts_every_image(digits, tmp_path, capsys):
    from flax import nnx
    from safetensors.numpy import save_file

    from flaxnets.models import create_model
    from flaxnets.weights.torch import export_state_dict

    model = create_model("mobilenet_v3_small", num_classes=1000, rngs=nnx.Rngs(0))
    path = tmp_path / "mobilenet_v3_small.safetensors"
    save_file(export_state_dict(model, "timm"), str(path))
    status = cli.main(["eval", "--model", "mobilenet_v3_small", "--weights", str(path), "--data", str(digits),
                       "--batch-size", "180", "--json"])
    out = capsys.readouterr().out
    assert status == 0
    result = json.loads(out)
    assert result["eval_count"] == 360
    assert 0.0 <= result["eval_top1"] <= result["eval_top5"] <= 1.0

"""`flaxnets benchmark data --json` and the `benchmark model` argument surface."""

import json

from _data_fixtures import write_class_folders

from flaxnets.cli import build_parser, main


def test_benchmark_data_json(tmp_path, capsys):
    write_class_folders(tmp_path / "train", [3, 3], size=(40, 50))
    assert main(["benchmark", "data", str(tmp_path), "--batches", "2", "--batch-size", "4",
                 "--image-size", "24", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["workers"] == 0 and result["images"] == 8
    assert result["images_per_second"] > 0 and result["augment"] == "none"
    from flaxnets.data import turbo

    assert result["decoder"] == ("turbojpeg-region" if turbo.available() else "whole-image")


def test_benchmark_model_arguments():
    args = build_parser().parse_args(
        ["benchmark", "model", "efficientnet_b0", "--batch", "8", "--resolution", "64",
         "--mode", "infer", "--dtype", "float32", "--steps", "3", "--json"])
    assert (args.target, args.name, args.batch, args.resolution, args.mode, args.dtype, args.steps,
            args.json) == ("model", "efficientnet_b0", 8, 64, "infer", "float32", 3, True)


def test_benchmark_data_rejects_bad_counts(tmp_path, capsys):
    assert main(["benchmark", "data", str(tmp_path), "--batches", "0"]) == 2
    assert "--batches 0" in capsys.readouterr().err


def test_benchmark_data_times_the_hosts_share_of_device_augmentation(tmp_path, capsys):
    write_class_folders(tmp_path / "train", [3, 3], size=(40, 50))
    for on in ("host", "device"):
        assert main(["benchmark", "data", str(tmp_path), "--batches", "1", "--batch-size", "4",
                     "--image-size", "24", "--augment", "randaugment", "--augment-on", on, "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["augment_on"] == on and result["images_per_second"] > 0


def test_benchmark_data_skips_undecodable_files_once_each(tmp_path, capsys):
    from bad_files import UNDECODABLE, reported, write_odd_files

    write_class_folders(tmp_path / "train", [3, 3], size=(40, 50))
    odd = write_odd_files(tmp_path / "train" / "c0")
    # 2 batches of 6 cycle through all 10 files at least once: every bad file is met.
    assert main(["benchmark", "data", str(tmp_path), "--batches", "2", "--batch-size", "6",
                 "--image-size", "24"]) == 0
    captured = capsys.readouterr()
    assert sorted(reported(captured.err)) == sorted(str(odd[name]) for name in UNDECODABLE)
    assert "images/s" in captured.out and "2 undecodable images skipped" in captured.out


def test_benchmark_data_times_a_recipes_own_pipeline(tmp_path, capsys):
    """`--recipe` times the recipe's training loader (its crop, size and augmentation as training
    reads them, --set applied); the flags it would contradict are one-line errors."""
    write_class_folders(tmp_path / "train", [3, 3], size=(40, 50))
    assert main(["benchmark", "data", str(tmp_path), "--recipe", "efficientnet_b0_tpu", "--set", "data.image_size=24",
                 "--batches", "1", "--batch-size", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["recipe"], result["crop"], result["image_size"], result["images"]) == (
        "efficientnet_b0_tpu", "tf_tpu", 24, 4)
    assert result["augment"] == "none" and result["images_per_second"] > 0
    assert main(["benchmark", "data", str(tmp_path), "--recipe", "efficientnet_b0_tpu", "--crop", "inception"]) == 2
    assert "--crop with --recipe efficientnet_b0_tpu: the recipe's data.crop is timed" in capsys.readouterr().err
    assert main(["benchmark", "data", str(tmp_path), "--set", "data.crop=inception"]) == 2
    assert "--set goes with --recipe" in capsys.readouterr().err
    assert main(["benchmark", "data", str(tmp_path), "--recipe", "efficientnet_b0_tpu", "--set", "data.crpo=1"]) == 2
    assert "data.crpo" in capsys.readouterr().err

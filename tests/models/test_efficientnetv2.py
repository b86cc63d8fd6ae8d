"""EfficientNetV2 B0-B3, S, M, L against the references: logits after Keras weight transfer,
the reference's width rounding and defaults, timm's state-dict layout, ONNX and LiteRT export.
(Trainable parameters of all seven, to the unit: tests/models/test_counts.py.)"""

import math

import numpy as np
import pytest
from flax import nnx
from weights.test_keras_parity import RESOLUTION, _keras_logits, _keras_model, _relative_error
from weights.weights_helpers import build, forward

from flaxnets.models import count_params, create_model, get_spec
from flaxnets.models.blocks import resolve
from flaxnets.models.layers import conv_implementation
from flaxnets.weights.keras import transfer_from_keras
from flaxnets.weights.torch import export_state_dict


def test_width_rounding_depth_and_defaults_are_the_references():
    # B3 (width 1.2, depth 1.4): 16 * 1.2 = 19.2 rounds to 16 by the reference's round_filters
    # (EfficientNet-V1's rule would give 24); stem 32 * 1.2 -> 40; head 1280 * 1.2 = 1536.
    stem, configs, head, _ = resolve(get_spec("efficientnetv2_b3").architecture(), 0.2)
    assert (stem, head) == (40, 1536)
    assert configs[0].out_channels == 16 and configs[0].residual is False  # 40 -> 16
    repeats = [math.ceil(1.4 * r) for r in (1, 2, 2, 3, 5, 8)]
    assert len(configs) == sum(repeats)
    # Stochastic depth 0.2 * idx / n (effnetv2_model.py EffNetV2Model.call).
    assert [c.drop_path_rate for c in configs] == pytest.approx(
        [0.2 * i / len(configs) for i in range(len(configs))])
    # S: fused blocks, expansion 1 with a residual, then fused-4, then MBConv with SE 0.25 of the
    # block input.
    _, s, _, _ = resolve(get_spec("efficientnetv2_s").architecture())
    assert [c.block for c in s[:3]] == ["conv_bn"] * 2 + ["fused_ib"]
    assert s[1].residual and s[1].kernel_size == 3 and s[2].mid_channels == 96
    first_mb = next(c for c in s if c.block == "inverted_residual")
    assert (first_mb.in_channels, first_mb.se_channels, first_mb.mid_channels) == (64, 16, 256)
    spec = get_spec("efficientnetv2_s")
    assert (spec.resolution, spec.defaults["train_resolution"], spec.dropout_rate) == (384, 300, 0.2)
    assert (spec.bn_epsilon, spec.bn_momentum, spec.stochastic_depth_rate) == (1e-3, 0.9, 0.2)
    assert get_spec("efficientnetv2_l").dropout_rate == 0.4
    assert get_spec("efficientnetv2_b2").resolution == 260


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["b0", "b3", "s"])
def test_logits_match_keras(variant):
    import keras

    builder = getattr(keras.applications, f"EfficientNetV2{variant.upper()}")
    reference = _keras_model(builder, 0, include_preprocessing=False)
    trainable = sum(math.prod(w.shape) for w in reference.trainable_weights)
    x = np.random.default_rng(1).normal(size=(2, RESOLUTION, RESOLUTION, 3)).astype(np.float32)
    expected = _keras_logits(reference, x)
    model = nnx.eval_shape(lambda: create_model(f"efficientnetv2_{variant}", num_classes=10))
    assert count_params(model) == trainable
    transfer_from_keras(model, reference)
    model.eval()
    with conv_implementation("unrolled"):
        ours = np.asarray(nnx.jit(lambda m, x: m(x))(model, x))
    assert ours.shape == (2, 10)
    assert _relative_error(ours, expected) < 1e-4


def test_timm_layout_of_s():
    model = nnx.eval_shape(lambda: create_model("efficientnetv2_s"))
    shapes = {k: v.shape for k, v in export_state_dict(build("efficientnetv2_s", 0), "timm").items()}
    # timm tf_efficientnetv2_s: cn blocks (conv, bn1), er blocks (conv_exp, bn1, conv_pwl, bn2),
    # ir blocks (conv_pw, bn1, conv_dw, bn2, se.conv_reduce/expand, conv_pwl, bn3).
    expected = {
        "conv_stem.weight": (24, 3, 3, 3),
        "bn1.running_var": (24,),
        "blocks.0.1.conv.weight": (24, 24, 3, 3),
        "blocks.0.1.bn1.weight": (24,),
        "blocks.1.0.conv_exp.weight": (96, 24, 3, 3),
        "blocks.1.3.conv_pwl.weight": (48, 192, 1, 1),
        "blocks.2.3.bn2.bias": (64,),
        "blocks.3.0.conv_pw.weight": (256, 64, 1, 1),
        "blocks.3.0.conv_dw.weight": (256, 1, 3, 3),
        "blocks.3.0.se.conv_reduce.weight": (16, 256, 1, 1),
        "blocks.3.5.se.conv_expand.bias": (512,),
        "blocks.4.8.conv_pwl.weight": (160, 960, 1, 1),
        "blocks.5.14.bn3.running_mean": (256,),
        "conv_head.weight": (1280, 256, 1, 1),
        "bn2.weight": (1280,),
        "classifier.weight": (1000, 1280),
    }
    assert {k: shapes[k] for k in expected} == expected
    assert "blocks.6.0.conv_pw.weight" not in shapes and "blocks.5.15.bn1.weight" not in shapes
    assert sum(math.prod(v) for k, v in shapes.items()
               if not k.endswith(("running_mean", "running_var"))) == count_params(model)


@pytest.mark.slow
def test_onnx_and_litert_exports_match_jax(tmp_path):
    import onnxruntime as ort

    from flaxnets.export.onnx import export_onnx

    model = build("efficientnetv2_b0", 5)
    x = np.random.default_rng(2).standard_normal((2, 64, 64, 3)).astype(np.float32)
    want = forward(model, x)
    path = export_onnx(model, tmp_path / "v2.onnx", resolution=64)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        ["logits"], {"input": x})[0]
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    pytest.importorskip("ai_edge_litert.interpreter", reason="needs flaxnets[litert]")
    from flaxnets.export.tflite import LiteRTModel, Preprocessing, export_tflite

    lite = export_tflite(model, tmp_path / "v2.tflite",
                         prep=Preprocessing(64, 1.0, "bicubic", (127.5,) * 3, (127.5,) * 3))
    got = LiteRTModel(lite).run(x)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()

"""ONNX export: onnxruntime matches JAX (BatchNorm folded, both paddings, dynamic batch)."""

import numpy as np
import pytest

import onnx
import onnxruntime as ort

from weights.weights_helpers import build, forward  # noqa: E402

from flaxnets.export.onnx import export_onnx  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, overrides",
    [("mobilenet_v3_small", {"padding": "symmetric"}), ("efficientnet_lite0", {"padding": "same"}),
     ("mobilenet_v4_conv_small", {"padding": "same"}),
     # Exact GELU (erf), the activation of MobileNetV4 Hybrid-L.
     ("mobilenet_v3_small", {"padding": "same", "activation": "gelu"})],
)
def test_onnxruntime_matches_jax(tmp_path, name, overrides):
    model = build(name, 3, **overrides)
    path = export_onnx(model, tmp_path / f"{name}.onnx", resolution=64)
    graph = onnx.load(str(path)).graph
    ops = [n.op_type for n in graph.node]
    assert "BatchNormalization" not in ops and ops.count("Conv") > 10
    # BatchNorm folded into the convs: its (x - mean) would otherwise appear as Sub.
    assert "Sub" not in ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):  # the batch dimension is dynamic
        x = np.random.default_rng(batch).standard_normal((batch, 64, 64, 3)).astype(np.float32)
        got = session.run(["logits"], {"input": x})[0]
        want = forward(model, x)
        assert got.shape == want.shape == (batch, 1000)
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_same_padding_is_asymmetric(tmp_path):
    model = build("efficientnet_lite0", 4, padding="same")
    graph = onnx.load(str(export_onnx(model, tmp_path / "m.onnx", resolution=64))).graph
    stem = next(n for n in graph.node if n.op_type == "Conv")
    pads = next(a.ints for a in stem.attribute if a.name == "pads")
    assert list(pads) == [0, 0, 1, 1]  # 3x3 stride 2 on 64 px: TF puts the pixel bottom/right

"""MobileNetV4 against TF-Vision: logits of the backbone + classification head in eval mode,
the initial layer scales, the trainable-parameter counts, and the stochastic-depth rate of every
block.

Goldens: tests/models/goldens/mnv4_logits.npz, written by tools/make_mnv4_goldens.py with
TF-Vision (command and versions recorded in the file). They hold only logits, layer scales,
counts and drop rates: both sides draw every weight and BatchNorm statistic from the rule in
tools/seeded_weights.py, except where a test keeps each side's own initial layer scales.
"""

import importlib.util
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from flaxnets.models import count_params, create_model, get_spec, list_models
from flaxnets.models.blocks import resolve

ROOT = Path(__file__).resolve().parents[2]
GOLDENS = np.load(Path(__file__).parent / "goldens" / "mnv4_logits.npz")
_spec = importlib.util.spec_from_file_location("seeded_weights", ROOT / "tools" / "seeded_weights.py")
seeded_weights = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(seeded_weights)
HYBRIDS = ["mobilenet_v4_hybrid_medium",
           pytest.param("mobilenet_v4_hybrid_large", marks=pytest.mark.slow)]


def seeded_model(name, *, own_layer_scale=False, **overrides):
    """`create_model(name)` with every array drawn by the shared rule, in eval mode;
    `own_layer_scale`: the layer scales keep the value our model initialises them to."""
    def build():
        return create_model(name, **overrides)

    # Our initial layer scales need a model built for real; otherwise shapes suffice.
    model = build() if own_layer_scale else nnx.eval_shape(build)
    seed = int(GOLDENS["seed"])
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))):
        dotted = ".".join(map(str, path))
        if own_layer_scale and dotted.endswith("layer_scale.gamma"):
            continue
        var.value = jnp.asarray(seeded_weights.seeded_value(dotted, tuple(var.value.shape), seed))
    model.eval()
    return model


def _relative_error(model, reference):
    r, b = int(GOLDENS["resolution"]), int(GOLDENS["batch"])
    ours = np.asarray(model(seeded_weights.seeded_images((b, r, r, 3), int(GOLDENS["seed"]))))
    assert ours.shape == reference.shape
    return np.abs(ours - reference).max() / np.abs(reference).max()


@pytest.mark.parametrize("name", [
    "mobilenet_v4_conv_small",
    pytest.param("mobilenet_v4_conv_medium", marks=pytest.mark.slow),
    pytest.param("mobilenet_v4_conv_large", marks=pytest.mark.slow),
    "mobilenet_v4_hybrid_medium",
    pytest.param("mobilenet_v4_hybrid_large", marks=pytest.mark.slow),
])
def test_logits_match_tf_vision(name):
    """Every weight, BN statistic and layer scale by the rule: the architecture (block order,
    kernels, activations, attention) decides the logits."""
    model = seeded_model(name, num_classes=int(GOLDENS["num_classes"]))
    error = _relative_error(model, GOLDENS[name])
    assert error <= 1e-4, error


@pytest.mark.parametrize("name", HYBRIDS)
def test_logits_with_each_side_s_initial_layer_scale_match_tf_vision(name):
    """TF-Vision's layer scales as it initialises them (`MNV4LayerScale(layer_scale_init_value)`),
    ours as our model initialises them, every other array by the rule; and the initial gammas
    themselves, block after block, equal TF-Vision's."""
    model = seeded_model(name, own_layer_scale=True, num_classes=int(GOLDENS["num_classes"]))
    ours = np.concatenate([np.asarray(block.layer_scale.gamma.value) for block in model.blocks
                           if block.layer_scale is not None])
    np.testing.assert_array_equal(ours, GOLDENS[f"{name}_layer_scale_init"])
    error = _relative_error(model, GOLDENS[f"{name}_tf_layer_scale"])
    assert error <= 1e-4, error


@pytest.mark.parametrize("name", [n for n in list_models() if get_spec(n).family == "mobilenet_v4"])
def test_trainable_params_match_tf_vision_s_count(name):
    """TF-Vision's backbone + ClassificationModel, 1000 classes, counted by tf_keras."""
    assert count_params(name) == int(GOLDENS[f"{name}_params"])


@pytest.mark.parametrize("name", ["mobilenet_v4_conv_medium", "mobilenet_v4_hybrid_medium",
                                  "mobilenet_v4_hybrid_large", "mobilenet_v4_conv_large"])
def test_stochastic_depth_of_every_block_is_tf_vision_s(name):
    """Default rate and rule of each model (its yaml's) give TF-Vision's per-block rates:
    rate * (i + 1) / n over all specs with attention unscaled, or flat for Conv-L."""
    spec = get_spec(name)
    _, configs, _, _ = resolve(spec.architecture(), spec.stochastic_depth_rate,
                               stochastic_depth_rule=spec.stochastic_depth_rule)
    reference = GOLDENS[f"{name}_drop_rates"]
    assert len(configs) == len(reference)
    for config, rate in zip(configs, reference):
        if np.isnan(rate):  # TF's Conv2DBNBlock has no stochastic depth, ours no residual
            assert config.block == "conv_bn" and not config.residual
        else:
            assert config.drop_path_rate == pytest.approx(rate, rel=1e-12, abs=1e-15)


@pytest.mark.slow
def test_onnx_export_with_attention_matches_jax(tmp_path):
    """Hybrid-M (multi-query attention with and without key/value downsampling, layer scale,
    the normalised pre-logits layer) through ONNX: onnxruntime agrees within 1e-4. (Weights by
    the shared rule: the uniformly random ones of the other export tests make the hybrid so
    ill-conditioned that two JAX convolution implementations already differ by 2e-3.)"""
    import onnx

    from flaxnets.export.onnx import export_onnx, relative_difference

    model = seeded_model("mobilenet_v4_hybrid_medium", num_classes=10)
    path = export_onnx(model, tmp_path / "hybrid.onnx", resolution=64)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Einsum", "Exp", "Conv"} <= ops and "BatchNormalization" not in ops
    assert relative_difference(model, path, 64, batch=3, seed=1) <= 1e-4

"""Architecture rules that earlier implementations got silently wrong (RECIPES.md pitfall 9)."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from flaxnets.models import get_spec, layer_summary
from flaxnets.models.blocks import resolve
from flaxnets.models.layers import ACTIVATIONS


def _keras_depth(v, divisor=8):
    """Keras `mobilenet_v3._depth`, re-typed here as the independent reference."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


# Keras MobileNetV3Large stack_fn: (expansion, filters, kernel, se)
KERAS_LARGE = [(1, 16, 3, 0), (4, 24, 3, 0), (3, 24, 3, 0), (3, 40, 5, 1), (3, 40, 5, 1),
               (3, 40, 5, 1), (6, 80, 3, 0), (2.5, 80, 3, 0), (2.3, 80, 3, 0), (2.3, 80, 3, 0),
               (6, 112, 3, 1), (6, 112, 3, 1), (6, 160, 5, 1), (6, 160, 5, 1), (6, 160, 5, 1)]


def _keras_large_channels(alpha):
    """Output channels of every conv of Keras MobileNetV3Large(alpha), in call order."""
    out, infilters = [16], 16
    for block_id, (expansion, filters, _, se) in enumerate(KERAS_LARGE):
        mid = _keras_depth(infilters * expansion) if block_id else infilters
        if block_id:
            out.append(mid)
        out.append(mid)  # depthwise
        if se:
            out += [_keras_depth(mid * 0.25), mid]
        infilters = _keras_depth(filters * alpha)
        out.append(infilters)
    out.append(_keras_depth(infilters * 6))
    return out


@pytest.mark.parametrize("name, alpha", [("mobilenet_v3_large", 1.0),
                                         ("mobilenet_v3_large_075", 0.75)])
def test_width_multiplier_scales_every_conv(name, alpha):
    convs = [r.output_shape[-1] for r in layer_summary(name, 64) if "Conv" in r.kind]
    assert convs == _keras_large_channels(alpha)


def test_width_075_narrows_every_block_and_the_head():
    full = [r for r in layer_summary("mobilenet_v3_large", 64) if "Conv" in r.kind]
    narrow = [r for r in layer_summary("mobilenet_v3_large_075", 64) if "Conv" in r.kind]
    first = next(i for i, r in enumerate(full) if r.path == "blocks/3/project_conv")
    # 16 * 0.75 and 24 * 0.75 round back up (to 16 and 24) under the divisor-8 rule, so the
    # first blocks keep their width; from the 40-channel stage on, every conv is narrower.
    assert all(a.output_shape[-1] < b.output_shape[-1]
               for a, b in zip(narrow[first:], full[first:]))
    assert narrow[-1].output_shape[-1] == 720  # head 960 * 0.75


def _head(name):
    return resolve(get_spec(name).architecture())[2]


def test_efficientnet_head_width_scales_with_width_coefficient():
    heads = {v: _head(f"efficientnet_{v}") for v in ["b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7"]}
    assert heads == {"b0": 1280, "b1": 1280, "b2": 1408, "b3": 1536, "b4": 1792, "b5": 2048,
                     "b6": 2304, "b7": 2560}
    assert all(_head(f"efficientnet_lite{i}") == 1280 for i in range(5))


def test_efficientnet_depth_uses_ceil_and_lite_fixes_first_and_last_stage():
    def repeats(name):
        _, configs, _, _ = resolve(get_spec(name).architecture())
        return len(configs)

    assert repeats("efficientnet_b0") == 16
    # B4 depth 1.8: ceil of 1.8 * (1, 2, 2, 3, 3, 4, 1)
    assert repeats("efficientnet_b4") == sum(math.ceil(1.8 * r) for r in (1, 2, 2, 3, 3, 4, 1))
    assert repeats("efficientnet_lite4") == 1 + sum(math.ceil(1.8 * r) for r in (2, 2, 3, 3, 4)) + 1
    _, lite, _, _ = resolve(get_spec("efficientnet_lite4").architecture())
    assert lite[0].in_channels == 32 and all(c.se_channels == 0 for c in lite)


def test_mobilenet_v3_activations_follow_the_table():
    _, large, _, _ = resolve(get_spec("mobilenet_v3_large").architecture())
    assert [c.activation for c in large] == ["relu"] * 6 + ["hard_swish"] * 9
    _, small, _, _ = resolve(get_spec("mobilenet_v3_small").architecture())
    assert [c.activation for c in small] == ["relu"] * 3 + ["hard_swish"] * 8
    assert all(c.se_activation == "relu" and c.se_gate == "hard_sigmoid"
               for c in large if c.se_channels)
    _, minimal, _, _ = resolve(get_spec("mobilenet_v3_large_minimal").architecture())
    assert {c.activation for c in minimal} == {"relu"} and not any(c.se_channels for c in minimal)
    # "relu" really is unbounded: a ReLU6 typed for ReLU would clip here.
    assert float(ACTIVATIONS["relu"](jnp.float32(7.0))) == 7.0
    assert float(ACTIVATIONS["relu6"](jnp.float32(7.0))) == 6.0


def test_relu_block_outputs_exceed_six_in_mobilenet_v3(make_model):
    """Behavioural: the first MobileNetV3 block's depthwise activation passes values above 6."""
    model = make_model("mobilenet_v3_large", num_classes=4)
    model.eval()
    block = model.blocks[0]
    x = jnp.asarray(np.random.default_rng(0).normal(0, 20, (1, 8, 8, 16)), jnp.float32)
    y = ACTIVATIONS[block.activation](block.depthwise_bn(block.depthwise_conv(x)))
    assert block.activation == "relu" and float(y.max()) > 6.0


def test_activation_override_replaces_every_table_activation():
    _, configs, _, _ = resolve(get_spec("efficientnet_b0").architecture(), activation="relu")
    assert {c.activation for c in configs} == {"relu"}
    assert {c.se_activation for c in configs} == {"relu"}
    assert {c.se_gate for c in configs} == {"sigmoid"}


def test_stochastic_depth_grows_linearly_with_block_index():
    _, configs, _, _ = resolve(get_spec("efficientnet_b0").architecture(), 0.2)
    rates = [c.drop_path_rate for c in configs]
    assert rates == pytest.approx([0.2 * i / 16 for i in range(16)])

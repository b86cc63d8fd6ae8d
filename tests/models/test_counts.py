"""Parameter counts and multiply-accumulates against the reference figures."""

import math

import pytest

from flaxnets.models import (
    count_macs, count_params, create_model, get_spec, layer_summary, list_models, traced_summary,
)

# RECIPES.md section 2: trainable parameters of Keras 3 applications / timm, 1000 classes.
REFERENCE_PARAMS = {
    "mobilenet_v3_large": 5_483_032,
    "mobilenet_v3_large_075": 3_993_528,
    "mobilenet_v3_large_minimal": 3_924_288,
    "mobilenet_v3_small": 2_542_856,
    "mobilenet_v3_small_075": 2_041_872,
    "mobilenet_v3_small_minimal": 2_044_736,
    "mobilenet_v2": 3_504_872,
    "efficientnet_b0": 5_288_548,
    "efficientnet_b1": 7_794_184,
    "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232,
    "efficientnet_b4": 19_341_616,
    "efficientnet_b5": 30_389_784,
    "efficientnet_b6": 43_040_704,
    "efficientnet_b7": 66_347_960,
    "efficientnet_lite0": 4_652_008,
    "efficientnet_lite1": 5_416_680,
    "efficientnet_lite2": 6_092_072,
    "efficientnet_lite3": 8_197_096,
    "efficientnet_lite4": 13_006_568,
    # timm `mobilenetv4_*` (timm/models/mobilenetv3.py `_gen_mobilenet_v4`), 1000 classes; the
    # same figures as TF-Vision's builder counts them (tests/models/test_mobilenet_v4.py).
    "mobilenet_v4_conv_small": 3_774_024,
    "mobilenet_v4_conv_medium": 9_715_512,
    "mobilenet_v4_conv_large": 32_590_864,
    "mobilenet_v4_hybrid_medium": 11_074_648,
    "mobilenet_v4_hybrid_large": 37_764_624,
    # keras.applications EfficientNetV2B0..B3/S/M/L(weights=None), trainable weights, 1000
    # classes (keras 3, measured 2026-12-02); timm's tf_efficientnetv2_* builds the same layers
    # (`_gen_efficientnetv2_base/_s/_m/_l`: the same rows, stems and heads, round_limit=0.).
    "efficientnetv2_b0": 7_139_704,
    "efficientnetv2_b1": 8_141_052,
    "efficientnetv2_b2": 10_096_086,
    "efficientnetv2_b3": 14_358_406,
    "efficientnetv2_s": 21_458_488,
    "efficientnetv2_m": 54_139_356,
    "efficientnetv2_l": 118_515_272,
}


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
def test_trainable_params_match_reference_to_the_unit(name):
    assert count_params(name) == REFERENCE_PARAMS[name]


def test_every_registered_model_has_a_reference_count():
    assert set(list_models()) == set(REFERENCE_PARAMS)


def _published(figure: str) -> tuple[float, float]:
    """("219M" -> 219e6, half a unit of the last printed digit)."""
    scale = {"M": 1e6, "B": 1e9}[figure[-1]]
    digits = figure[:-1]
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    return float(digits) * scale, 0.5 * 10 ** -decimals * scale


# Our counts equal those of the keras.applications models to the unit
# (tests/models/test_macs_keras.py). Six of the published figures agree with them at their printed
# precision; eight do not (MNv3-L 216.6M vs 219M, S 56.51M vs 56M, S-0.75 43.4M vs 44M, MNv2
# 300.8M vs 300M, B1 0.687B vs 0.70B, B4 4.39B vs 4.2B, B5 10.3B vs 9.9B, B7 37.7B vs 37B), some
# above and some below, and the last test of this file shows that no counting convention closes
# the gap (docs/MODELS.md). Those are held to a relative bound instead.
RELATIVE_TOLERANCE = {"mobilenet_v3": 0.02, "mobilenet_v2": 0.01, "efficientnet": 0.05}
AT_PUBLISHED_PRECISION = {"mobilenet_v3_large_075", "mobilenet_v3_large_minimal",
                          "efficientnet_b0", "efficientnet_b2", "efficientnet_b3",
                          "efficientnet_b6"}


@pytest.mark.parametrize("name", [n for n in list_models() if get_spec(n).published_macs])
def test_macs_at_default_resolution_match_published(name):
    spec = get_spec(name)
    value, half_unit = _published(spec.published_macs)
    ours = count_macs(name)
    at_precision = abs(ours - value) <= half_unit
    # Both ways: a model that comes to agree must join AT_PUBLISHED_PRECISION.
    assert at_precision == (name in AT_PUBLISHED_PRECISION), (ours, spec.published_macs)
    assert abs(ours - value) <= RELATIVE_TOLERANCE[spec.family] * value, (ours, spec.published_macs)


def test_macs_follow_the_stated_convention_for_one_layer():
    rows = {r.path: r for r in layer_summary("mobilenet_v3_large")}
    stem = rows["stem_conv"]  # 224 -> 112, 3x3, 3 -> 16 channels
    assert stem.output_shape == (112, 112, 16)
    assert stem.macs == 112 * 112 * 3 * 3 * 3 * 16
    dw = rows["blocks/1/depthwise_conv"]  # 3x3 stride 2 depthwise on 64 channels -> 56x56
    assert dw.output_shape == (56, 56, 64) and dw.macs == 56 * 56 * 9 * 64
    assert rows["classifier"].macs == 1280 * 1000
    assert rows["stem_bn"].macs == 0


def test_macs_scale_with_resolution():
    assert count_macs("efficientnet_b0", 112) < count_macs("efficientnet_b0", 224) / 3.5


def test_counting_by_name_draws_no_random_parameter(monkeypatch):
    """Counting traces the model built with zero kernels: no initialiser draws a value, and
    the rows equal those of a model built for real."""
    from flaxnets.models import counting, layers

    def refuse(*args, **kwargs):
        raise AssertionError("counting drew parameter values")

    counting._summary.cache_clear()
    monkeypatch.setattr(layers, "_numpy_rng", refuse)
    rows = layer_summary("efficientnet_b7")
    assert sum(r.params for r in rows) == 66_347_960
    assert sum(r.macs for r in rows) == 37_745_884_192
    with pytest.raises(AssertionError, match="drew parameter values"):
        create_model("efficientnet_b0")
    monkeypatch.undo()
    model = create_model("mobilenet_v3_small", padding="symmetric")
    assert traced_summary(model, 64) == layer_summary("mobilenet_v3_small", 64, padding="symmetric")


# --- No counting convention reproduces every published figure ----------------------------------
# Each kind of operation gets a cost of its own, and a linear program looks for costs that put
# every figure of one paper within half a printed unit. Multiply-accumulates of convolutions and
# dense layers are split by role; elementwise work is counted per output element.

MAC_KINDS = ("stem", "depthwise", "pointwise", "se", "dense")
ELEMENT_KINDS = ("bn", "activation", "se_scale", "se_pool", "residual", "head_pool")
PAPERS = {
    "mobilenet_v3": ["mobilenet_v3_large", "mobilenet_v3_large_075", "mobilenet_v3_small",
                     "mobilenet_v3_small_075"],
    "efficientnet": [f"efficientnet_b{i}" for i in range(8)],
}


def _operation_counts(name: str) -> dict[str, int]:
    """Per-image count of every operation kind of `name` at its default resolution."""
    from flaxnets.models.blocks import resolve

    rows = layer_summary(name)
    _, configs, _, _ = resolve(get_spec(name).architecture())
    elements = {r.path: math.prod(r.output_shape) for r in rows}
    counts = dict.fromkeys(MAC_KINDS + ELEMENT_KINDS, 0)
    for r in rows:
        if r.kind == "BatchNorm":
            counts["bn"] += elements[r.path]
            counts["activation"] += 0 if r.path.endswith("project_bn") else elements[r.path]
        elif r.path == "stem_conv":
            counts["stem"] += r.macs
        elif r.kind == "DepthwiseConv2d":
            counts["depthwise"] += r.macs
        elif "/se/" in r.path:
            counts["se"] += r.macs
        elif r.kind == "Dense":
            counts["dense"] += r.macs
        else:
            counts["pointwise"] += r.macs
    for i, c in enumerate(configs):
        if c.se_channels:  # pool the depthwise output, then scale it
            counts["se_pool"] += elements[f"blocks/{i}/depthwise_bn"]
            counts["se_scale"] += elements[f"blocks/{i}/depthwise_bn"]
        if c.residual:
            counts["residual"] += elements[f"blocks/{i}/project_bn"]
    counts["head_pool"] = elements["head_bn"]
    assert sum(counts[k] for k in MAC_KINDS) == count_macs(name)
    return counts


def _costs_exist(targets, *, free, fixed=(), bounds=(0, None)) -> bool:
    """Whether costs within `bounds` for the `free` kinds (1 for the `fixed` kinds, 0 for the
    rest) bring each model's weighted count within half a unit of its (value, half_unit)."""
    from scipy.optimize import linprog

    a, b = [], []
    for name, (value, half_unit) in targets.items():
        counts = _operation_counts(name)
        rest = value - sum(counts[k] for k in fixed)
        row = [counts[k] / 1e6 for k in free]
        a += [row, [-x for x in row]]
        b += [(rest + half_unit) / 1e6, (half_unit - rest) / 1e6]
    result = linprog([0.0] * len(free), A_ub=a, b_ub=b, bounds=[bounds] * len(free))
    assert result.status in (0, 2), result.message  # 0: costs found, 2: none exist
    return result.status == 0


def _targets(names, convention=None):
    """The published figures of `names`, or (`convention` given: a cost per kind) the figures
    that convention gives, rounded to the same printed precision."""
    targets = {}
    for name in names:
        value, half_unit = _published(get_spec(name).published_macs)
        if convention:
            counts = _operation_counts(name)
            exact = sum(cost * counts[k] for k, cost in convention.items())
            value = round(exact / (2 * half_unit)) * 2 * half_unit
        targets[name] = (value, half_unit)
    return targets


@pytest.mark.parametrize("family", sorted(PAPERS))
def test_no_counting_convention_reproduces_every_published_figure(family):
    names = PAPERS[family]
    # The program finds a convention when there is one: figures printed from the MACs plus one
    # cost per BatchNorm element and two per activation element are reproduced.
    made_up = dict.fromkeys(MAC_KINDS, 1) | {"bn": 1, "activation": 2}
    assert _costs_exist(_targets(names, made_up), free=ELEMENT_KINDS, fixed=MAC_KINDS)
    # Every multiply-accumulate once, plus any non-negative cost per BatchNorm, activation, SE
    # scale, pooling or residual element: nothing fits, even with any one model left out.
    published = _targets(names)
    for left_out in names:
        subset = {n: t for n, t in published.items() if n != left_out}
        assert not _costs_exist(subset, free=ELEMENT_KINDS, fixed=MAC_KINDS), left_out
    # Nor does any cost between 0.5 and 2 for every kind, multiply-accumulates included.
    assert not _costs_exist(published, free=MAC_KINDS + ELEMENT_KINDS, bounds=(0.5, 2))
    if family == "efficientnet":
        # For EfficientNet no non-negative costs at all fit its eight figures.
        assert not _costs_exist(published, free=MAC_KINDS + ELEMENT_KINDS)

"""MobileNetV3 Large / Small (Howard et al., 2019), tables as in the TF-slim and Keras references.

Expanded widths are expansion ratios of the (scaled) block input, rounded to multiples of 8
(Keras `_depth(infilters * expansion)`); every table width and the stem/head are scaled by the
width multiplier; the pre-logits layer (1280 / 1024) only grows when width > 1, as in Keras.
"Minimal" variants use 3x3 kernels, ReLU everywhere and no squeeze-excite.
"""

from __future__ import annotations

from flaxnets.models.blocks import Architecture, InvertedResidual, Stage
from flaxnets.models.registry import register_family, register_models, tf_slim_mobilenet

RE, HS = "relu", "hard_swish"

# repeats, kernel, stride, expansion, out channels, SE ratio, activation
LARGE = (
    (1, 3, 1, 1, 16, None, RE),
    (1, 3, 2, 4, 24, None, RE),
    (1, 3, 1, 3, 24, None, RE),
    (1, 5, 2, 3, 40, 0.25, RE),
    (2, 5, 1, 3, 40, 0.25, RE),
    (1, 3, 2, 6, 80, None, HS),
    (1, 3, 1, 2.5, 80, None, HS),
    (2, 3, 1, 2.3, 80, None, HS),
    (2, 3, 1, 6, 112, 0.25, HS),
    (1, 5, 2, 6, 160, 0.25, HS),
    (2, 5, 1, 6, 160, 0.25, HS),
)

SMALL = (
    (1, 3, 2, 1, 16, 0.25, RE),
    (1, 3, 2, 72 / 16, 24, None, RE),
    (1, 3, 1, 88 / 24, 24, None, RE),
    (1, 5, 2, 4, 40, 0.25, HS),
    (2, 5, 1, 6, 40, 0.25, HS),
    (2, 5, 1, 3, 48, 0.25, HS),
    (1, 5, 2, 6, 96, 0.25, HS),
    (2, 5, 1, 6, 96, 0.25, HS),
)


def _stages(rows, minimal: bool) -> tuple[Stage, ...]:
    # Squeeze-excite on the expanded channels, ReLU inside, hard-sigmoid gate (Keras
    # mobilenet_v3.py `_se_block`).
    stages = []
    for r, k, s, e, c, se, act in rows:
        if minimal:
            k, se, act = 3, None, RE
        args = InvertedResidual.Args(k, e, se, act, se_base="mid", se_activation=RE,
                                     se_gate="hard_sigmoid")
        stages.append(Stage(InvertedResidual, r, s, c, args))
    return tuple(stages)


@register_family("mobilenet_v3")
def architecture(size: str = "large", width: float = 1.0, minimal: bool = False) -> Architecture:
    """The MobileNetV3 `size` ("large" | "small") architecture at `width`."""
    stages = LARGE if size == "large" else SMALL
    act = RE if minimal else HS
    return Architecture(
        stages=_stages(stages, minimal),
        stem_channels=16, stem_activation=act,
        head_channels=960 if size == "large" else 576, head_activation=act,
        pre_logits_channels=1280 if size == "large" else 1024, pre_logits_scale="above_one",
        width=width,
    )


# Top-1 and MACs: MobileNetV3 paper (Table 3); minimal variants from the TF-slim/Keras table.
register_models(
    tf_slim_mobilenet("mobilenet_v3_large", "mobilenet_v3", {"size": "large"}, 75.2, "219M"),
    tf_slim_mobilenet("mobilenet_v3_large_075", "mobilenet_v3", {"size": "large", "width": 0.75},
                      73.3, "155M"),
    tf_slim_mobilenet("mobilenet_v3_large_minimal", "mobilenet_v3",
                      {"size": "large", "minimal": True}, 72.3, "209M"),
    tf_slim_mobilenet("mobilenet_v3_small", "mobilenet_v3", {"size": "small"}, 67.4, "56M"),
    tf_slim_mobilenet("mobilenet_v3_small_075", "mobilenet_v3", {"size": "small", "width": 0.75},
                      65.4, "44M"),
    tf_slim_mobilenet("mobilenet_v3_small_minimal", "mobilenet_v3",
                      {"size": "small", "minimal": True}, 61.9),
)

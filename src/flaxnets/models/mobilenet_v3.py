"""MobileNetV3 Large / Small (Howard et al., 2019), tables as in the TF-slim and Keras references.

Expanded widths are expansion ratios of the (scaled) block input, rounded to multiples of 8
(Keras `_depth(infilters * expansion)`); every table width and the stem/head are scaled by the
width multiplier; the pre-logits layer (1280 / 1024) only grows when width > 1, as in Keras.
"Minimal" variants use 3x3 kernels, ReLU everywhere and no squeeze-excite.
"""

from __future__ import annotations

import dataclasses

from flaxnets.models.blocks import Architecture, Stage

RE, HS = "relu", "hard_swish"

# repeats, kernel, stride, expansion, out channels, SE ratio, activation
LARGE = (
    Stage(1, 3, 1, 1, 16, None, RE),
    Stage(1, 3, 2, 4, 24, None, RE),
    Stage(1, 3, 1, 3, 24, None, RE),
    Stage(1, 5, 2, 3, 40, 0.25, RE),
    Stage(2, 5, 1, 3, 40, 0.25, RE),
    Stage(1, 3, 2, 6, 80, None, HS),
    Stage(1, 3, 1, 2.5, 80, None, HS),
    Stage(2, 3, 1, 2.3, 80, None, HS),
    Stage(2, 3, 1, 6, 112, 0.25, HS),
    Stage(1, 5, 2, 6, 160, 0.25, HS),
    Stage(2, 5, 1, 6, 160, 0.25, HS),
)

SMALL = (
    Stage(1, 3, 2, 1, 16, 0.25, RE),
    Stage(1, 3, 2, 72 / 16, 24, None, RE),
    Stage(1, 3, 1, 88 / 24, 24, None, RE),
    Stage(1, 5, 2, 4, 40, 0.25, HS),
    Stage(2, 5, 1, 6, 40, 0.25, HS),
    Stage(2, 5, 1, 3, 48, 0.25, HS),
    Stage(1, 5, 2, 6, 96, 0.25, HS),
    Stage(2, 5, 1, 6, 96, 0.25, HS),
)


def _minimal(stages: tuple[Stage, ...]) -> tuple[Stage, ...]:
    return tuple(dataclasses.replace(s, kernel_size=3, se_ratio=None, activation=RE)
                 for s in stages)


def architecture(size: str = "large", width: float = 1.0, minimal: bool = False) -> Architecture:
    """The MobileNetV3 `size` ("large" | "small") architecture at `width`."""
    stages = LARGE if size == "large" else SMALL
    act = RE if minimal else HS
    return Architecture(
        stages=_minimal(stages) if minimal else stages,
        stem_channels=16, stem_activation=act,
        head_channels=960 if size == "large" else 576, head_activation=act,
        pre_logits_channels=1280 if size == "large" else 1024, pre_logits_scale="above_one",
        width=width, se_base="mid", se_activation=RE, se_gate="hard_sigmoid",
    )

"""EfficientNet B0-B7 (Tan & Le, 2019) and EfficientNet-Lite0-4, as in the TF-TPU reference.

B-series: swish, squeeze-excite 0.25 of the block input, width scaled everywhere (head 1280
included) with round_channels, depth scaled with ceil. Lite: ReLU6, no squeeze-excite, stem
(32) and head (1280) fixed, and the first and last stage not repeated more (TF-TPU
`efficientnet_lite_builder`, `fix_head_stem=True`).
"""

from __future__ import annotations

import dataclasses

from flaxnets.models.blocks import Architecture, Stage

# repeats, kernel, stride, expansion, out channels, SE ratio, activation
B0 = (
    Stage(1, 3, 1, 1, 16, 0.25, "swish"),
    Stage(2, 3, 2, 6, 24, 0.25, "swish"),
    Stage(2, 5, 2, 6, 40, 0.25, "swish"),
    Stage(3, 3, 2, 6, 80, 0.25, "swish"),
    Stage(3, 5, 1, 6, 112, 0.25, "swish"),
    Stage(4, 5, 2, 6, 192, 0.25, "swish"),
    Stage(1, 3, 1, 6, 320, 0.25, "swish"),
)

# name: (width, depth, resolution, dropout)
SCALING = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
    "lite0": (1.0, 1.0, 224, 0.2),
    "lite1": (1.0, 1.1, 240, 0.2),
    "lite2": (1.1, 1.2, 260, 0.3),
    "lite3": (1.2, 1.4, 280, 0.3),
    "lite4": (1.4, 1.8, 300, 0.3),
}


def architecture(variant: str = "b0") -> Architecture:
    """The EfficientNet `variant` ("b0".."b7", "lite0".."lite4") architecture."""
    width, depth, _, _ = SCALING[variant]
    if variant.startswith("lite"):
        stages = tuple(dataclasses.replace(s, se_ratio=None, activation="relu6") for s in B0)
        return Architecture(
            stages=stages, stem_channels=32, stem_activation="relu6", stem_scale="never",
            head_channels=1280, head_activation="relu6", head_scale="never",
            width=width, depth=depth, fixed_depth_stages=(0, len(B0) - 1),
        )
    return Architecture(
        stages=B0, stem_channels=32, stem_activation="swish",
        head_channels=1280, head_activation="swish", head_scale="always",
        width=width, depth=depth, se_base="in", se_gate="sigmoid",
    )

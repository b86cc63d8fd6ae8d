"""EfficientNet B0-B7 (Tan & Le, 2019) and EfficientNet-Lite0-4, as in the TF-TPU reference.

B-series: swish, squeeze-excite 0.25 of the block input, width scaled everywhere (head 1280
included) with round_channels, depth scaled with ceil. Lite: ReLU6, no squeeze-excite, stem
(32) and head (1280) fixed, and the first and last stage not repeated more (TF-TPU
`efficientnet_lite_builder`, `fix_head_stem=True`).
"""

from __future__ import annotations

from flaxnets.models.blocks import Architecture, InvertedResidual, Stage
from flaxnets.models.registry import (
    IMAGENET_MEAN, IMAGENET_STD, LITE_MEAN, LITE_STD, ModelSpec, register_family, register_models,
)

# repeats, kernel, stride, expansion, out channels (inverted-residual blocks)
B0 = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
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


@register_family("efficientnet")
def architecture(variant: str = "b0") -> Architecture:
    """The EfficientNet `variant` ("b0".."b7", "lite0".."lite4") architecture."""
    width, depth, _, _ = SCALING[variant]
    if variant.startswith("lite"):
        stages = tuple(Stage(InvertedResidual, r, s, c, InvertedResidual.Args(k, e, None, "relu6"))
                       for r, k, s, e, c in B0)
        return Architecture(
            stages=stages, stem_channels=32, stem_activation="relu6", stem_scale="never",
            head_channels=1280, head_activation="relu6", head_scale="never",
            width=width, depth=depth, fixed_depth_stages=(0, len(B0) - 1),
        )
    # Squeeze-excite 0.25 of the block input (TF-TPU efficientnet_model.py `MBConvBlock`).
    stages = tuple(Stage(InvertedResidual, r, s, c,
                         InvertedResidual.Args(k, e, 0.25, "swish", se_base="in"))
                   for r, k, s, e, c in B0)
    return Architecture(
        stages=stages, stem_channels=32, stem_activation="swish",
        head_channels=1280, head_activation="swish", head_scale="always",
        width=width, depth=depth,
    )


def _spec(variant: str, top1: float | None, macs: str | None = None) -> ModelSpec:
    _, _, res, dropout = SCALING[variant]
    lite = variant.startswith("lite")
    # The TF-TPU EfficientNet checkpoints: ImageNet mean/std; Lite: mean 127, std 128.
    mean, std = (LITE_MEAN, LITE_STD) if lite else (IMAGENET_MEAN, IMAGENET_STD)
    return ModelSpec(f"efficientnet_{variant}", "efficientnet", {"variant": variant}, res,
                     res / (res + 32), "bicubic", mean, std, dropout, top1, macs,
                     stochastic_depth_rate=0.2, kernel_init="tf_tpu", eval_crop="tf_tpu")


# Top-1 and MACs: EfficientNet paper (Table 2).
register_models(
    _spec("b0", 77.1, "0.39B"),
    _spec("b1", 79.1, "0.70B"),
    _spec("b2", 80.1, "1.0B"),
    _spec("b3", 81.6, "1.8B"),
    _spec("b4", 82.9, "4.2B"),
    _spec("b5", 83.6, "9.9B"),
    _spec("b6", 84.0, "19B"),
    _spec("b7", 84.3, "37B"),
    *(_spec(f"lite{i}", None) for i in range(5)),
)

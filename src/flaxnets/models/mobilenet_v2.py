"""MobileNetV2 (Sandler et al., 2018), as in the TF-slim / Keras references: ReLU6, no
squeeze-excite, head 1280 grown only when width > 1."""

from __future__ import annotations

from flaxnets.models.blocks import Architecture, InvertedResidual, Stage
from flaxnets.models.registry import register_family, register_models, tf_slim_mobilenet

# repeats, kernel, stride, expansion, out channels (inverted-residual blocks)
TABLE = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (3, 3, 2, 6, 32),
    (4, 3, 2, 6, 64),
    (3, 3, 1, 6, 96),
    (3, 3, 2, 6, 160),
    (1, 3, 1, 6, 320),
)


@register_family("mobilenet_v2")
def architecture(width: float = 1.0) -> Architecture:
    """The MobileNetV2 architecture at `width`."""
    return Architecture(
        stages=tuple(Stage(InvertedResidual, r, s, c, InvertedResidual.Args(k, e, None, "relu6"))
                     for r, k, s, e, c in TABLE), stem_channels=32, stem_activation="relu6",
        head_channels=1280, head_activation="relu6", head_scale="above_one", width=width,
    )


# MobileNetV2 paper (Table 4).
register_models(tf_slim_mobilenet("mobilenet_v2", "mobilenet_v2", {}, 72.0, "300M"))

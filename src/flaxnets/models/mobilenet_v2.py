"""MobileNetV2 (Sandler et al., 2018), as in the TF-slim / Keras references: ReLU6, no
squeeze-excite, head 1280 grown only when width > 1."""

from __future__ import annotations

from flaxnets.models.blocks import Architecture, Stage

# repeats, kernel, stride, expansion, out channels, SE ratio, activation
TABLE = (
    Stage(1, 3, 1, 1, 16, None, "relu6"),
    Stage(2, 3, 2, 6, 24, None, "relu6"),
    Stage(3, 3, 2, 6, 32, None, "relu6"),
    Stage(4, 3, 2, 6, 64, None, "relu6"),
    Stage(3, 3, 1, 6, 96, None, "relu6"),
    Stage(3, 3, 2, 6, 160, None, "relu6"),
    Stage(1, 3, 1, 6, 320, None, "relu6"),
)


def architecture(width: float = 1.0) -> Architecture:
    """The MobileNetV2 architecture at `width`."""
    return Architecture(
        stages=TABLE, stem_channels=32, stem_activation="relu6",
        head_channels=1280, head_activation="relu6", head_scale="above_one", width=width,
    )

"""The one block builder shared by every family.

A family is a `Architecture`: a stem, a table of `Stage` rows and a head. `resolve` applies
width/depth scaling (`round_channels` / `round_repeats`) and the knobs to produce one
`BlockConfig` per block; `ConvNet` builds the network from those configs. Every block is an
inverted residual: optional 1x1 expansion, depthwise conv, optional squeeze-excite, 1x1
projection, and a residual (with stochastic depth) when stride is 1 and channels match. With
expand_ratio 1 it is the depthwise-separable block.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import jax.numpy as jnp
from flax import nnx

from flaxnets.errors import FlaxnetsError
from flaxnets.models.layers import (
    ACTIVATIONS, BatchNorm, Conv2d, Dense, DepthwiseConv2d, SqueezeExcite, activation_fn,
    initializers, make_divisible, round_channels, round_repeats,
)


@dataclass(frozen=True)
class Stage:
    """One row of a family table: `repeats` blocks, the first with `stride`."""

    repeats: int
    kernel_size: int
    stride: int
    expand_ratio: float
    out_channels: int
    se_ratio: float | None
    activation: str


@dataclass(frozen=True)
class Architecture:
    """A family's table and its scaling rules.

    Scale rules for stem/head/pre-logits widths: "always" (round_channels with the width
    multiplier), "above_one" (only when width > 1, Keras MobileNet heads) or "never".
    se_base: "in" (EfficientNet: block input channels, floor) or "mid" (MobileNetV3: expanded
    channels, make_divisible). se_activation None means the block's own activation.
    """

    stages: tuple[Stage, ...]
    stem_channels: int
    stem_activation: str
    head_channels: int
    head_activation: str
    width: float = 1.0
    depth: float = 1.0
    stem_scale: str = "always"
    head_scale: str = "always"
    pre_logits_channels: int | None = None
    pre_logits_scale: str = "above_one"
    se_base: str = "mid"
    se_activation: str | None = None
    se_gate: str = "sigmoid"
    fixed_depth_stages: tuple[int, ...] = ()


@dataclass(frozen=True)
class BlockConfig:
    """One resolved block."""

    in_channels: int
    mid_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    activation: str
    se_channels: int
    se_activation: str
    se_gate: str
    residual: bool
    drop_path_rate: float


def _scaled(channels: int, rule: str, width: float) -> int:
    if rule == "always" or (rule == "above_one" and width > 1.0):
        return round_channels(channels, width)
    return channels


def resolve(arch: Architecture, stochastic_depth_rate: float = 0.0,
            activation: str | None = None) -> tuple[int, list[BlockConfig], int, int | None]:
    """(stem channels, block configs, head channels, pre-logits channels) for `arch`.

    Stochastic depth grows linearly with the block index: block b of n drops its residual
    branch with probability `stochastic_depth_rate * b / n` (the TF/Keras rule; block 0 never).
    """
    stem = _scaled(arch.stem_channels, arch.stem_scale, arch.width)
    rows = []
    for i, stage in enumerate(arch.stages):
        repeats = stage.repeats if i in arch.fixed_depth_stages else round_repeats(
            stage.repeats, arch.depth)
        out = round_channels(stage.out_channels, arch.width)
        for j in range(repeats):
            rows.append((stage, out, stage.stride if j == 0 else 1))
    blocks, in_ch = [], stem
    for b, (stage, out, stride) in enumerate(rows):
        mid = round_channels(in_ch * stage.expand_ratio) if stage.expand_ratio != 1 else in_ch
        if stage.se_ratio:
            if arch.se_base == "in":
                se = max(1, int(in_ch * stage.se_ratio))
            else:
                se = make_divisible(mid * stage.se_ratio)
        else:
            se = 0
        act = activation or stage.activation
        blocks.append(BlockConfig(
            in_channels=in_ch, mid_channels=mid, out_channels=out,
            kernel_size=stage.kernel_size, stride=stride, activation=act,
            se_channels=se, se_activation=activation or arch.se_activation or stage.activation,
            se_gate=arch.se_gate, residual=stride == 1 and in_ch == out,
            drop_path_rate=stochastic_depth_rate * b / len(rows),
        ))
        in_ch = out
    head = _scaled(arch.head_channels, arch.head_scale, arch.width)
    pre_logits = None
    if arch.pre_logits_channels:
        pre_logits = _scaled(arch.pre_logits_channels, arch.pre_logits_scale, arch.width)
    return stem, blocks, head, pre_logits


@dataclass(frozen=True)
class Knobs:
    """Creation-time settings shared by every family (see `create_model`)."""

    num_classes: int = 1000
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    dropout_rate: float = 0.2
    stochastic_depth_rate: float = 0.0
    activation: str | None = None
    kernel_init: str = "tf_tpu"
    dtype: str | jnp.dtype = "float32"
    padding: str = "same"
    bn_group_size: int | None = None

    def check(self) -> "Knobs":
        """Validate values, raising FlaxnetsError naming the bad one."""
        if self.activation is not None:
            activation_fn(self.activation)
        initializers(self.kernel_init)
        if self.padding not in ("same", "symmetric"):
            raise FlaxnetsError(f"unknown padding {self.padding!r}; expected same or symmetric")
        for name in ("dropout_rate", "stochastic_depth_rate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise FlaxnetsError(f"{name}={getattr(self, name)!r}; expected 0 <= value < 1")
        if self.bn_group_size is not None and self.bn_group_size < 1:
            raise FlaxnetsError(f"bn_group_size={self.bn_group_size!r}; expected None or >= 1")
        if self.num_classes < 1:
            raise FlaxnetsError(f"num_classes={self.num_classes!r}; expected >= 1")
        try:
            jnp.dtype(self.dtype)
        except TypeError:
            raise FlaxnetsError(f"unknown dtype {self.dtype!r}; expected e.g. float32, bfloat16")
        return self

    def replace(self, **kw) -> "Knobs":
        """A copy with fields replaced."""
        return dataclasses.replace(self, **kw)


class InvertedResidual(nnx.Module):
    """[1x1 expand, BN, act] -> depthwise kxk, BN, act -> [SE] -> 1x1 project, BN -> [+ input]."""

    def __init__(self, cfg: BlockConfig, knobs: Knobs, inits: dict[str, Callable],
                 *, rngs: nnx.Rngs):
        dtype = jnp.dtype(knobs.dtype)

        def bn(c):
            return BatchNorm(c, momentum=knobs.bn_momentum, epsilon=knobs.bn_epsilon,
                             group_size=knobs.bn_group_size, dtype=dtype)

        self.has_expand = cfg.mid_channels != cfg.in_channels
        if self.has_expand:
            self.expand_conv = Conv2d(cfg.in_channels, cfg.mid_channels, 1,
                                      kernel_init=inits["conv"], dtype=dtype, rngs=rngs)
            self.expand_bn = bn(cfg.mid_channels)
        self.depthwise_conv = DepthwiseConv2d(cfg.mid_channels, cfg.kernel_size, cfg.stride,
                                              padding=knobs.padding, kernel_init=inits["depthwise"],
                                              dtype=dtype, rngs=rngs)
        self.depthwise_bn = bn(cfg.mid_channels)
        self.se = nnx.data(None)
        if cfg.se_channels:
            self.se = SqueezeExcite(cfg.mid_channels, cfg.se_channels,
                                    activation=cfg.se_activation, gate=cfg.se_gate,
                                    kernel_init=inits["conv"], dtype=dtype, rngs=rngs)
        self.project_conv = Conv2d(cfg.mid_channels, cfg.out_channels, 1,
                                   kernel_init=inits["conv"], dtype=dtype, rngs=rngs)
        self.project_bn = bn(cfg.out_channels)
        self.activation = cfg.activation
        self.residual = cfg.residual
        self.drop_path = nnx.Dropout(cfg.drop_path_rate, broadcast_dims=(1, 2, 3))

    def __call__(self, x, *, rngs: nnx.Rngs | None = None):
        act = ACTIVATIONS[self.activation]
        y = x
        if self.has_expand:
            y = act(self.expand_bn(self.expand_conv(y)))
        y = act(self.depthwise_bn(self.depthwise_conv(y)))
        if self.se is not None:
            y = self.se(y)
        y = self.project_bn(self.project_conv(y))
        if self.residual:
            y = self.drop_path(y, rngs=rngs) + x
        return y


class ConvNet(nnx.Module):
    """Stem conv -> inverted-residual blocks -> 1x1 head conv -> global average pool (float32)
    -> [pre-logits dense + act, MobileNetV3] -> dropout -> classifier (float32 logits)."""

    def __init__(self, arch: Architecture, knobs: Knobs, *, rngs: nnx.Rngs):
        knobs.check()
        dtype = jnp.dtype(knobs.dtype)
        inits = initializers(knobs.kernel_init)
        stem, configs, head, pre_logits = resolve(arch, knobs.stochastic_depth_rate,
                                                  knobs.activation)
        self.block_configs = tuple(configs)
        self.dtype = dtype
        self.stem_activation = knobs.activation or arch.stem_activation
        self.head_activation = knobs.activation or arch.head_activation
        self.dropout_rate = knobs.dropout_rate
        self.stochastic_depth_rate = knobs.stochastic_depth_rate

        def bn(c):
            return BatchNorm(c, momentum=knobs.bn_momentum, epsilon=knobs.bn_epsilon,
                             group_size=knobs.bn_group_size, dtype=dtype)

        self.stem_conv = Conv2d(3, stem, 3, 2, padding=knobs.padding, kernel_init=inits["conv"],
                                dtype=dtype, rngs=rngs)
        self.stem_bn = bn(stem)
        self.blocks = nnx.List([InvertedResidual(c, knobs, inits, rngs=rngs) for c in configs])
        self.head_conv = Conv2d(configs[-1].out_channels, head, 1, kernel_init=inits["conv"],
                                dtype=dtype, rngs=rngs)
        self.head_bn = bn(head)
        features = head
        self.pre_logits = nnx.data(None)
        if pre_logits:
            # A 1x1 conv on the pooled 1x1 map in the references: a dense layer here (same
            # weights reshaped), initialised like a conv, computed in float32.
            self.pre_logits = Dense(head, pre_logits, kernel_init=inits["conv"], rngs=rngs)
            features = pre_logits
        self.dropout = nnx.Dropout(knobs.dropout_rate)
        self.classifier = Dense(features, knobs.num_classes, kernel_init=inits["dense"],
                                rngs=rngs)

    def __call__(self, x, *, rngs: nnx.Rngs | None = None):
        """float32 NHWC normalised images -> float32 logits. `rngs` (with a `dropout` stream)
        is required in train mode when dropout or stochastic depth is active."""
        if rngs is None and not self.dropout.deterministic and (
                self.dropout_rate > 0 or self.stochastic_depth_rate > 0):
            raise FlaxnetsError(
                "train mode with dropout/stochastic depth needs rngs=nnx.Rngs(dropout=seed) "
                "(or call model.eval())"
            )
        x = x.astype(self.dtype)
        x = ACTIVATIONS[self.stem_activation](self.stem_bn(self.stem_conv(x)))
        for block in self.blocks:
            x = block(x, rngs=rngs)
        x = ACTIVATIONS[self.head_activation](self.head_bn(self.head_conv(x)))
        x = x.astype(jnp.float32).mean(axis=(1, 2))  # [B, C]: no keepdims before the classifier
        if self.pre_logits is not None:
            x = ACTIVATIONS[self.head_activation](self.pre_logits(x))
        x = self.dropout(x, rngs=rngs)
        return self.classifier(x)

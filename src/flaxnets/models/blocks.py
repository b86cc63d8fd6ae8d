"""The one block builder shared by every family.

A family is an `Architecture`: a table of `Stage` rows, its scaling rules and its network (the
stem and head around the blocks; `ConvNet` unless the family brings its own). A `Stage` is
(block, repeats, stride, out_channels, args): `block` is a block class and `args` an instance
of that class's own `Args` dataclass. Each block class owns its definition:

- `Args`: the arguments a family table gives it;
- `configure`: its resolved `Config` (a `BlockConfig`) from its args, input and output
  channels: expanded and squeeze-excite widths, whether it has a residual;
- `output_channels`: its output channels, from its input and the stage's;
- its layers, whose classes declare the kind of each of their parameters
  (`PARAM_KINDS` in `flaxnets.models.layers`);
- `layout_names`: the name of each of its layers in other frameworks' layouts.

`resolve` applies width/depth scaling (the architecture's `channel_rounding`,
`round_repeats`), the stochastic-depth rule and the knobs to produce one config per block; the
network builds each block from its config. Nothing outside a block's class names it: counting
and ONNX export trace the built model, parameter kinds come from the layers' declarations and
weight import/export ask the network and each block for their layers' names.

Blocks (timm's names in brackets):
- `InvertedResidual` [InvertedResidual / DepthwiseSeparable]: optional 1x1 expansion,
  depthwise conv, optional squeeze-excite, 1x1 projection (MobileNetV2/V3, EfficientNet).
- `ConvBnAct` [ConvBnAct]: kxk conv, BN, activation.
- `FusedInvertedResidual` [EdgeResidual]: kxk expansion conv (with the stride), 1x1 projection.
- `UniversalInvertedResidual` [UniversalInvertedResidual]: MobileNetV4's universal inverted
  bottleneck: optional start depthwise (no activation), 1x1 expansion, optional middle
  depthwise, 1x1 projection; ExtraDW (both depthwise), IB (middle only), ConvNext-like (start
  only), FFN (neither).
- `MobileAttention` [MobileAttention]: BN then mobile multi-query attention (one key/value head
  shared by all query heads), with keys and values optionally downsampled by a strided
  depthwise conv.
A residual (with stochastic depth) joins input and output when stride is 1 and the channels
match; layer scale, where the architecture has it, scales the branch of universal inverted
bottleneck and attention blocks (before the residual, and even where there is none, as both
references do).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from flaxnets.errors import FlaxnetsError
from flaxnets.models.layers import (
    ACTIVATIONS, MOVING_VARIANCES, BatchNorm, Conv2d, Dense, DepthwiseConv2d, LayerScale, MatMul, SqueezeExcite,
    activation_fn, initializers, make_divisible, round_channels, round_repeats, wide,
)


@dataclass(frozen=True)
class Stage:
    """One row of a family table: `repeats` blocks of class `block`, the first with `stride`,
    each built from `args` (a `block.Args`). `out_channels` is before width scaling; None where
    the block decides its own (`Block.output_channels`: attention keeps its input's)."""

    block: type[Block]
    repeats: int
    stride: int
    out_channels: int | None
    args: Any


@dataclass(frozen=True)
class Architecture:
    """A family's table, its scaling rules and its network.

    Scale rules for stem/head/pre-logits widths: "always" (`channel_rounding` with the width
    multiplier), "above_one" (only when width > 1, Keras MobileNet heads) or "never".
    `channel_rounding(channels, width)` is the family's width rounding (timm's `round_chs_fn`);
    the default rounds to multiples of 8, never more than 10% down.
    pre_logits_norm: the pre-logits layer has no bias and is followed by BatchNorm (MobileNetV4).
    depth_rule: how stochastic depth grows (see `drop_path_rates`).
    stage_starts: table rows that begin a stage of the reference layout (timm's `blocks.S`);
    empty: a stage begins wherever the output channels change.
    network: the module class that builds the stem, the blocks and the head from this
    architecture (`network(arch, knobs, rngs=...)`); None: `ConvNet`.
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
    pre_logits_norm: bool = False
    fixed_depth_stages: tuple[int, ...] = ()
    depth_rule: str = "blocks"
    stage_starts: tuple[int, ...] = ()
    channel_rounding: Callable[[float, float], int] = round_channels
    network: type[nnx.Module] | None = None

    def build(self, knobs: Knobs, *, rngs: nnx.Rngs) -> nnx.Module:
        """The network of this architecture with `knobs`."""
        return (self.network or ConvNet)(self, knobs, rngs=rngs)


@dataclass(frozen=True, kw_only=True)
class BlockConfig:
    """What every resolved block has; each block class's `Config` adds its own fields.
    `stage` / `index` place it in the reference layout's `blocks.S.I`."""

    block_type: type[Block] = dataclasses.field(repr=False)
    in_channels: int
    out_channels: int
    stride: int
    residual: bool
    drop_path_rate: float
    stage: int = 0
    index: int = 0

    @property
    def block(self) -> str:
        """The block's type name (`Block.NAME`)."""
        return self.block_type.NAME


def _scaled(channels: int, rule: str, arch: Architecture) -> int:
    if rule == "always" or (rule == "above_one" and arch.width > 1.0):
        return arch.channel_rounding(channels, arch.width)
    return channels


#: Stochastic-depth rules (`Architecture.depth_rule`, the `stochastic_depth_rule` knob).
DEPTH_RULES = ("blocks", "tf_vision_specs", "flat")


def drop_path_rates(rule: str, rate: float, blocks: list[type[Block]]) -> list[float]:
    """The stochastic-depth rate of each block (`blocks`: their classes, in order).

    "blocks" (TF-TPU EfficientNet / Keras applications): block b of n drops its residual
    branch with probability `rate * b / n` (block 0 never).
    "tf_vision_specs" (TF-Vision MobileNet with flat_stochastic_depth_drop_rate false,
    `official/vision/modeling/backbones/mobilenet.py` `_mobilenet_base`): spec i of n gets
    `rate * (i + 1) / n`, where the specs are the stem conv, every block and the three head
    specs (960 conv, pooling, 1280 conv), so block b is spec b + 1; blocks whose class says
    `TF_VISION_FULL_RATE` (attention) get the unscaled `rate` (`MultiHeadSelfAttentionBlock`
    receives the backbone's rate itself).
    "flat" (TF-Vision with flat_stochastic_depth_drop_rate true): `rate` for every block.
    """
    if rule == "flat":
        return [rate] * len(blocks)
    if rule == "blocks":
        return [rate * b / len(blocks) for b in range(len(blocks))]
    if rule == "tf_vision_specs":
        specs = len(blocks) + 4
        return [rate if cls.TF_VISION_FULL_RATE else rate * (b + 2) / specs
                for b, cls in enumerate(blocks)]
    raise FlaxnetsError(f"unknown depth rule {rule!r}; expected one of {', '.join(DEPTH_RULES)}")


def resolve(arch: Architecture, stochastic_depth_rate: float = 0.0,
            activation: str | None = None, stochastic_depth_rule: str | None = None,
            ) -> tuple[int, list[BlockConfig], int, int | None]:
    """(stem channels, block configs, head channels, pre-logits channels) for `arch`.

    Each block's config comes from its class (`Block.configure`); `activation` (the knob)
    replaces every table activation. Stochastic depth follows `stochastic_depth_rule`, else
    `arch.depth_rule` (`drop_path_rates`).
    """
    stem = _scaled(arch.stem_channels, arch.stem_scale, arch)
    rows = []
    for i, stage in enumerate(arch.stages):
        if not (isinstance(stage.block, type) and issubclass(stage.block, Block)):
            raise FlaxnetsError(f"stage {i}: {stage.block!r} is not a block class")
        if not isinstance(stage.args, stage.block.Args):
            raise FlaxnetsError(f"stage {i}: {stage.block.__name__} takes "
                                f"{stage.block.Args.__qualname__}, got {type(stage.args).__name__}")
        repeats = stage.repeats if i in arch.fixed_depth_stages else round_repeats(
            stage.repeats, arch.depth)
        out = (None if stage.out_channels is None
               else arch.channel_rounding(stage.out_channels, arch.width))
        for j in range(repeats):
            rows.append((i, stage, out, stage.stride if j == 0 else 1))
    rates = drop_path_rates(stochastic_depth_rule or arch.depth_rule, stochastic_depth_rate,
                            [r[1].block for r in rows])
    blocks, in_ch = [], stem
    stage_index, index = -1, 0
    for b, (row, stage, out, stride) in enumerate(rows):
        out = stage.block.output_channels(stage.args, in_ch, out)
        starts = (row in arch.stage_starts and (b == 0 or rows[b - 1][0] != row)
                  if arch.stage_starts else b == 0 or out != blocks[-1].out_channels)
        stage_index, index = (stage_index + 1, 0) if starts else (stage_index, index + 1)
        blocks.append(stage.block.configure(
            stage.args, activation, in_channels=in_ch, out_channels=out, stride=stride,
            drop_path_rate=rates[b], stage=stage_index, index=index))
        in_ch = out
    head = _scaled(arch.head_channels, arch.head_scale, arch)
    pre_logits = None
    if arch.pre_logits_channels:
        pre_logits = _scaled(arch.pre_logits_channels, arch.pre_logits_scale, arch)
    return stem, blocks, head, pre_logits


@dataclass(frozen=True)
class Knobs:
    """Creation-time settings shared by every family (see `create_model`)."""

    num_classes: int = 1000
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    dropout_rate: float = 0.2
    stochastic_depth_rate: float = 0.0
    stochastic_depth_rule: str | None = None
    activation: str | None = None
    kernel_init: str = "tf_tpu"
    dtype: str | jnp.dtype = "float32"
    padding: str = "same"
    bn_group_size: int | None = None
    bn_moving_variance: str = "biased"

    def check(self) -> "Knobs":
        """Validate values, raising FlaxnetsError naming the bad one."""
        if self.activation is not None:
            activation_fn(self.activation)
        if self.stochastic_depth_rule not in (None,) + DEPTH_RULES:
            raise FlaxnetsError(f"unknown stochastic_depth_rule {self.stochastic_depth_rule!r}; "
                                f"expected one of {', '.join(DEPTH_RULES)}")
        initializers(self.kernel_init)
        if self.padding not in ("same", "symmetric"):
            raise FlaxnetsError(f"unknown padding {self.padding!r}; expected same or symmetric")
        for name in ("dropout_rate", "stochastic_depth_rate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise FlaxnetsError(f"{name}={getattr(self, name)!r}; expected 0 <= value < 1")
        if self.bn_group_size is not None and self.bn_group_size < 1:
            raise FlaxnetsError(f"bn_group_size={self.bn_group_size!r}; expected None or >= 1")
        if self.bn_moving_variance not in MOVING_VARIANCES:
            raise FlaxnetsError(f"bn_moving_variance={self.bn_moving_variance!r}; expected "
                                f"{' or '.join(MOVING_VARIANCES)}")
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


def batch_norm(channels: int, knobs: Knobs) -> BatchNorm:
    """A BatchNorm with the knobs' momentum, epsilon, group size, moving-variance estimate and
    compute dtype."""
    return BatchNorm(channels, momentum=knobs.bn_momentum, epsilon=knobs.bn_epsilon,
                     group_size=knobs.bn_group_size, moving_variance=knobs.bn_moving_variance,
                     dtype=jnp.dtype(knobs.dtype))


def _residual(in_channels: int, out_channels: int, stride: int) -> bool:
    return stride == 1 and in_channels == out_channels


class Block(nnx.Module):
    """A block type: what every block shares (residual with stochastic depth, optional layer
    scale) and what each block class declares about itself.

    Subclasses set `NAME` (the type's name in configs), `Args` (their table arguments, a
    frozen dataclass), `Config` (their resolved config, a `BlockConfig`), `TIMM_NAMES` (our
    attribute -> timm's module name inside the block) and implement `configure`.
    """

    NAME: ClassVar[str] = ""
    Args: ClassVar[type]
    Config: ClassVar[type[BlockConfig]] = BlockConfig
    TIMM_NAMES: ClassVar[dict[str, str]] = {}
    #: Under the "tf_vision_specs" depth rule this block gets the unscaled rate (attention).
    TF_VISION_FULL_RATE: ClassVar[bool] = False

    @classmethod
    def output_channels(cls, args, in_channels: int, stage_channels: int | None) -> int:
        """The block's output channels, given its input's and its stage's (width-scaled)."""
        if stage_channels is None:
            raise FlaxnetsError(f"a {cls.NAME} stage needs out_channels")
        return stage_channels

    @classmethod
    def configure(cls, args, activation: str | None, *, in_channels: int, out_channels: int,
                  stride: int, **placement) -> BlockConfig:
        """The resolved config of one block: `args` from its stage, `activation` the knob
        that replaces the table's (None: keep it); `placement` is drop_path_rate, stage and
        index."""
        raise NotImplementedError

    def _finish(self, cfg: BlockConfig, layer_scale: float | None = None):
        self.residual = cfg.residual
        self.layer_scale = nnx.data(None)
        if layer_scale is not None:
            self.layer_scale = LayerScale(cfg.out_channels, layer_scale)
        self.drop_path = nnx.Dropout(cfg.drop_path_rate, broadcast_dims=(1, 2, 3))

    def _join(self, y, x, rngs):
        if self.layer_scale is not None:
            y = self.layer_scale(y)
        if self.residual:
            y = self.drop_path(y, rngs=rngs) + x
        return y

    def layout_names(self, layout: str) -> dict[str, str]:
        """Our attribute path ("se.reduce") -> the layer's module name inside the block in
        `layout` ("timm"; "lukemelas" = EfficientNet-PyTorch), for the layers it has."""
        if layout != "timm":
            source = {"lukemelas": "EfficientNet-PyTorch"}.get(layout, layout)
            raise FlaxnetsError(f"the {source} layout has no {self.NAME} blocks")
        return {**self.TIMM_NAMES, "layer_scale": "layer_scale"}


class InvertedResidual(Block):
    """[1x1 expand, BN, act] -> depthwise kxk, BN, act -> [SE] -> 1x1 project, BN -> [+ input]."""

    NAME = "inverted_residual"

    @dataclass(frozen=True)
    class Args:
        """`se_base`: squeeze-excite width from "in" (EfficientNet: block input channels,
        floor) or "mid" (MobileNetV3: expanded channels, make_divisible); `se_activation`
        None means the block's own activation."""

        kernel_size: int
        expand_ratio: float
        se_ratio: float | None = None
        activation: str = "relu"
        se_base: str = "mid"
        se_activation: str | None = None
        se_gate: str = "sigmoid"

    @dataclass(frozen=True, kw_only=True)
    class Config(BlockConfig):
        mid_channels: int
        kernel_size: int
        activation: str
        se_channels: int
        se_activation: str
        se_gate: str

    # EfficientNet-PyTorch names of the block's layers (its only block type).
    LUKEMELAS_NAMES = {"expand_conv": "_expand_conv", "expand_bn": "_bn0",
                       "depthwise_conv": "_depthwise_conv", "depthwise_bn": "_bn1",
                       "se.reduce": "_se_reduce", "se.expand": "_se_expand",
                       "project_conv": "_project_conv", "project_bn": "_bn2"}

    @classmethod
    def configure(cls, args, activation, *, in_channels, out_channels, stride, **placement):
        mid = in_channels if args.expand_ratio == 1 else make_divisible(
            in_channels * args.expand_ratio)
        se = 0
        if args.se_ratio:
            se = (max(1, int(in_channels * args.se_ratio)) if args.se_base == "in"
                  else make_divisible(mid * args.se_ratio))
        return cls.Config(
            block_type=cls, in_channels=in_channels, out_channels=out_channels, stride=stride,
            residual=_residual(in_channels, out_channels, stride), mid_channels=mid,
            kernel_size=args.kernel_size, activation=activation or args.activation,
            se_channels=se, se_activation=activation or args.se_activation or args.activation,
            se_gate=args.se_gate, **placement)

    def __init__(self, cfg: Config, knobs: Knobs, inits: dict[str, Callable],
                 *, rngs: nnx.Rngs):
        dtype = jnp.dtype(knobs.dtype)
        self.activation = cfg.activation
        self.has_expand = cfg.mid_channels != cfg.in_channels
        if self.has_expand:
            self.expand_conv = Conv2d(cfg.in_channels, cfg.mid_channels, 1,
                                      kernel_init=inits["conv"], dtype=dtype, rngs=rngs)
            self.expand_bn = batch_norm(cfg.mid_channels, knobs)
        self.depthwise_conv = DepthwiseConv2d(cfg.mid_channels, cfg.kernel_size, cfg.stride,
                                              padding=knobs.padding, kernel_init=inits["depthwise"],
                                              dtype=dtype, rngs=rngs)
        self.depthwise_bn = batch_norm(cfg.mid_channels, knobs)
        self.se = nnx.data(None)
        if cfg.se_channels:
            self.se = SqueezeExcite(cfg.mid_channels, cfg.se_channels,
                                    activation=cfg.se_activation, gate=cfg.se_gate,
                                    kernel_init=inits["conv"], dtype=dtype, rngs=rngs)
        self.project_conv = Conv2d(cfg.mid_channels, cfg.out_channels, 1,
                                   kernel_init=inits["conv"], dtype=dtype, rngs=rngs)
        self.project_bn = batch_norm(cfg.out_channels, knobs)
        self._finish(cfg)

    def __call__(self, x, *, rngs: nnx.Rngs | None = None):
        act = ACTIVATIONS[self.activation]
        y = x
        if self.has_expand:
            y = act(self.expand_bn(self.expand_conv(y)))
        y = act(self.depthwise_bn(self.depthwise_conv(y)))
        if self.se is not None:
            y = self.se(y)
        y = self.project_bn(self.project_conv(y))
        return self._join(y, x, rngs)

    def layout_names(self, layout: str) -> dict[str, str]:
        if layout == "lukemelas":
            return self.LUKEMELAS_NAMES
        if layout != "timm":
            return super().layout_names(layout)
        se = {"se.reduce": "se.conv_reduce", "se.expand": "se.conv_expand"}
        if self.has_expand:  # timm InvertedResidual
            return {"expand_conv": "conv_pw", "expand_bn": "bn1", "depthwise_conv": "conv_dw",
                    "depthwise_bn": "bn2", "project_conv": "conv_pwl", "project_bn": "bn3", **se}
        return {"depthwise_conv": "conv_dw", "depthwise_bn": "bn1", "project_conv": "conv_pw",
                "project_bn": "bn2", **se}  # timm DepthwiseSeparableConv


class ConvBnAct(Block):
    """kxk conv (with the stride), BN, act -> [+ input with `skip`]."""

    NAME = "conv_bn"
    TIMM_NAMES = {"conv": "conv", "bn": "bn1"}

    @dataclass(frozen=True)
    class Args:
        """`skip`: a residual where stride is 1 and the channels match (timm
        `ConvBnAct(skip=True)`; EfficientNetV2's fused blocks of expansion 1)."""

        kernel_size: int
        activation: str = "relu"
        skip: bool = False

    @dataclass(frozen=True, kw_only=True)
    class Config(BlockConfig):
        kernel_size: int
        activation: str

    @classmethod
    def configure(cls, args, activation, *, in_channels, out_channels, stride, **placement):
        return cls.Config(block_type=cls, in_channels=in_channels, out_channels=out_channels,
                          stride=stride,
                          residual=args.skip and _residual(in_channels, out_channels, stride),
                          kernel_size=args.kernel_size,
                          activation=activation or args.activation, **placement)

    def __init__(self, cfg: Config, knobs: Knobs, inits: dict[str, Callable],
                 *, rngs: nnx.Rngs):
        self.activation = cfg.activation
        self.conv = Conv2d(cfg.in_channels, cfg.out_channels, cfg.kernel_size, cfg.stride,
                           padding=knobs.padding, kernel_init=inits["conv"],
                           dtype=jnp.dtype(knobs.dtype), rngs=rngs)
        self.bn = batch_norm(cfg.out_channels, knobs)
        self._finish(cfg)

    def __call__(self, x, *, rngs: nnx.Rngs | None = None):
        return self._join(ACTIVATIONS[self.activation](self.bn(self.conv(x))), x, rngs)


class FusedInvertedResidual(Block):
    """kxk expand (with the stride), BN, act -> 1x1 project, BN -> [+ input] (TF-Vision
    `InvertedBottleneckBlock` with use_depthwise=False)."""

    NAME = "fused_ib"
    TIMM_NAMES = {"expand_conv": "conv_exp", "expand_bn": "bn1", "project_conv": "conv_pwl",
                  "project_bn": "bn2"}

    @dataclass(frozen=True)
    class Args:
        kernel_size: int
        expand_ratio: float
        activation: str = "relu"

    @dataclass(frozen=True, kw_only=True)
    class Config(BlockConfig):
        mid_channels: int
        kernel_size: int
        activation: str

    @classmethod
    def configure(cls, args, activation, *, in_channels, out_channels, stride, **placement):
        return cls.Config(block_type=cls, in_channels=in_channels, out_channels=out_channels,
                          stride=stride, residual=_residual(in_channels, out_channels, stride),
                          mid_channels=make_divisible(in_channels * args.expand_ratio),
                          kernel_size=args.kernel_size, activation=activation or args.activation,
                          **placement)

    def __init__(self, cfg: Config, knobs: Knobs, inits: dict[str, Callable],
                 *, rngs: nnx.Rngs):
        dtype = jnp.dtype(knobs.dtype)
        self.activation = cfg.activation
        self.expand_conv = Conv2d(cfg.in_channels, cfg.mid_channels, cfg.kernel_size, cfg.stride,
                                  padding=knobs.padding, kernel_init=inits["conv"], dtype=dtype,
                                  rngs=rngs)
        self.expand_bn = batch_norm(cfg.mid_channels, knobs)
        self.project_conv = Conv2d(cfg.mid_channels, cfg.out_channels, 1,
                                   kernel_init=inits["conv"], dtype=dtype, rngs=rngs)
        self.project_bn = batch_norm(cfg.out_channels, knobs)
        self._finish(cfg)

    def __call__(self, x, *, rngs: nnx.Rngs | None = None):
        y = ACTIVATIONS[self.activation](self.expand_bn(self.expand_conv(x)))
        return self._join(self.project_bn(self.project_conv(y)), x, rngs)


class UniversalInvertedResidual(Block):
    """[start depthwise, BN] -> 1x1 expand, BN, act -> [middle depthwise, BN, act] -> 1x1
    project, BN -> [layer scale] -> [+ input]. The stride goes to the middle depthwise, or to
    the start one where there is no middle one (TF-Vision `UniversalInvertedBottleneckBlock`
    with middle_dw_downsample, timm `UniversalInvertedResidual`)."""

    NAME = "uib"
    TIMM_NAMES = {"start_conv": "dw_start.conv", "start_bn": "dw_start.bn",
                  "expand_conv": "pw_exp.conv", "expand_bn": "pw_exp.bn",
                  "middle_conv": "dw_mid.conv", "middle_bn": "dw_mid.bn",
                  "project_conv": "pw_proj.conv", "project_bn": "pw_proj.bn"}

    @dataclass(frozen=True)
    class Args:
        """`start_kernel_size` / `kernel_size`: the start / middle depthwise kernels (0 =
        none); `layer_scale`: its initial value (None: no layer scale)."""

        start_kernel_size: int
        kernel_size: int
        expand_ratio: float
        activation: str = "relu"
        layer_scale: float | None = None

    @dataclass(frozen=True, kw_only=True)
    class Config(BlockConfig):
        mid_channels: int
        start_kernel_size: int
        kernel_size: int
        activation: str
        layer_scale: float | None

    @classmethod
    def configure(cls, args, activation, *, in_channels, out_channels, stride, **placement):
        return cls.Config(block_type=cls, in_channels=in_channels, out_channels=out_channels,
                          stride=stride, residual=_residual(in_channels, out_channels, stride),
                          mid_channels=make_divisible(in_channels * args.expand_ratio),
                          start_kernel_size=args.start_kernel_size, kernel_size=args.kernel_size,
                          activation=activation or args.activation, layer_scale=args.layer_scale,
                          **placement)

    def __init__(self, cfg: Config, knobs: Knobs, inits: dict[str, Callable],
                 *, rngs: nnx.Rngs):
        dtype = jnp.dtype(knobs.dtype)
        if cfg.stride > 1 and not (cfg.kernel_size or cfg.start_kernel_size):
            raise FlaxnetsError("a strided uib block needs a start or middle depthwise conv")
        self.activation = cfg.activation
        self.start_conv = self.start_bn = self.middle_conv = self.middle_bn = nnx.data(None)
        if cfg.start_kernel_size:
            self.start_conv = DepthwiseConv2d(
                cfg.in_channels, cfg.start_kernel_size, 1 if cfg.kernel_size else cfg.stride,
                padding=knobs.padding, kernel_init=inits["depthwise"], dtype=dtype, rngs=rngs)
            self.start_bn = batch_norm(cfg.in_channels, knobs)
        self.expand_conv = Conv2d(cfg.in_channels, cfg.mid_channels, 1,
                                  kernel_init=inits["conv"], dtype=dtype, rngs=rngs)
        self.expand_bn = batch_norm(cfg.mid_channels, knobs)
        if cfg.kernel_size:
            self.middle_conv = DepthwiseConv2d(
                cfg.mid_channels, cfg.kernel_size, cfg.stride, padding=knobs.padding,
                kernel_init=inits["depthwise"], dtype=dtype, rngs=rngs)
            self.middle_bn = batch_norm(cfg.mid_channels, knobs)
        self.project_conv = Conv2d(cfg.mid_channels, cfg.out_channels, 1,
                                   kernel_init=inits["conv"], dtype=dtype, rngs=rngs)
        self.project_bn = batch_norm(cfg.out_channels, knobs)
        self._finish(cfg, cfg.layer_scale)

    def __call__(self, x, *, rngs: nnx.Rngs | None = None):
        act = ACTIVATIONS[self.activation]
        y = x
        if self.start_conv is not None:
            y = self.start_bn(self.start_conv(y))
        y = act(self.expand_bn(self.expand_conv(y)))
        if self.middle_conv is not None:
            y = act(self.middle_bn(self.middle_conv(y)))
        y = self.project_bn(self.project_conv(y))
        return self._join(y, x, rngs)


class MobileAttention(Block):
    """BN -> mobile multi-query attention -> [layer scale] -> + input.

    `num_heads` query heads of `key_dim` (1x1 conv) share one key and one value head (1x1
    convs of `key_dim`); with kv_stride > 1 keys and values are first downsampled by a strided
    kxk depthwise conv and BN each. Logits are scaled by 1/sqrt(key_dim), softmax in float32,
    and the heads' outputs are concatenated (head-major) and projected back by a 1x1 conv.
    The block keeps its input's channels and resolution.
    TF-Vision `MultiHeadSelfAttentionBlock` with use_multi_query (its
    `OptimizedMultiQueryAttentionLayerWithDownSampling` builds the downsampling BatchNorms with
    its own defaults, momentum 0.99 and epsilon 1e-3, whatever the backbone's; so do we), timm
    `MobileAttention` / `MultiQueryAttention2d`.
    """

    NAME = "mqa"
    TF_VISION_FULL_RATE = True
    TIMM_NAMES = {"norm": "norm", "query_proj": "attn.query.proj",
                  "key_down_conv": "attn.key.down_conv", "key_down_bn": "attn.key.norm",
                  "key_proj": "attn.key.proj", "value_down_conv": "attn.value.down_conv",
                  "value_down_bn": "attn.value.norm", "value_proj": "attn.value.proj",
                  "output_proj": "attn.output.proj"}

    @dataclass(frozen=True)
    class Args:
        """`kernel_size`: the key/value downsampling depthwise kernel (used when
        kv_stride > 1); `key_dim` is also the value dim."""

        num_heads: int
        key_dim: int
        kv_stride: int = 1
        kernel_size: int = 3
        layer_scale: float | None = None

    @dataclass(frozen=True, kw_only=True)
    class Config(BlockConfig):
        num_heads: int
        key_dim: int
        kv_stride: int
        kernel_size: int
        layer_scale: float | None

    @classmethod
    def output_channels(cls, args, in_channels, stage_channels):
        if stage_channels is not None and stage_channels != in_channels:
            raise FlaxnetsError(f"an mqa block keeps its {in_channels} channels; got "
                                f"{stage_channels}")
        return in_channels

    @classmethod
    def configure(cls, args, activation, *, in_channels, out_channels, stride, **placement):
        if stride != 1:
            raise FlaxnetsError(f"an mqa block keeps its resolution; got stride {stride}")
        return cls.Config(block_type=cls, in_channels=in_channels, out_channels=out_channels,
                          stride=stride, residual=True, num_heads=args.num_heads,
                          key_dim=args.key_dim, kv_stride=args.kv_stride,
                          kernel_size=args.kernel_size, layer_scale=args.layer_scale, **placement)

    def __init__(self, cfg: Config, knobs: Knobs, inits: dict[str, Callable],
                 *, rngs: nnx.Rngs):
        dtype = jnp.dtype(knobs.dtype)
        c, heads, dim = cfg.in_channels, cfg.num_heads, cfg.key_dim
        self.norm = batch_norm(c, knobs)
        self.query_proj = Conv2d(c, heads * dim, 1, kernel_init=inits["conv"], dtype=dtype,
                                 rngs=rngs)
        self.key_down_conv = self.key_down_bn = nnx.data(None)
        self.value_down_conv = self.value_down_bn = nnx.data(None)
        down_knobs = knobs.replace(bn_momentum=0.99, bn_epsilon=1e-3)
        if cfg.kv_stride > 1:
            self.key_down_conv = DepthwiseConv2d(c, cfg.kernel_size, cfg.kv_stride,
                                                 padding=knobs.padding,
                                                 kernel_init=inits["depthwise"], dtype=dtype,
                                                 rngs=rngs)
            self.key_down_bn = batch_norm(c, down_knobs)
        self.key_proj = Conv2d(c, dim, 1, kernel_init=inits["conv"], dtype=dtype, rngs=rngs)
        if cfg.kv_stride > 1:
            self.value_down_conv = DepthwiseConv2d(c, cfg.kernel_size, cfg.kv_stride,
                                                   padding=knobs.padding,
                                                   kernel_init=inits["depthwise"], dtype=dtype,
                                                   rngs=rngs)
            self.value_down_bn = batch_norm(c, down_knobs)
        self.value_proj = Conv2d(c, dim, 1, kernel_init=inits["conv"], dtype=dtype, rngs=rngs)
        self.logits = MatMul("blhk,bpk->blhp")
        self.attend = MatMul("blhp,bpk->blhk")
        self.output_proj = Conv2d(heads * dim, c, 1, kernel_init=inits["conv"], dtype=dtype,
                                  rngs=rngs)
        self.num_heads, self.key_dim, self.dtype = heads, dim, dtype
        self._finish(cfg, cfg.layer_scale)

    def __call__(self, x, *, rngs: nnx.Rngs | None = None):
        b, h, w, _ = x.shape
        y = self.norm(x)
        q = self.query_proj(y).reshape(b, h * w, self.num_heads, self.key_dim)
        k, v = y, y
        if self.key_down_conv is not None:
            k = self.key_down_bn(self.key_down_conv(k))
            v = self.value_down_bn(self.value_down_conv(v))
        k = self.key_proj(k).reshape(b, -1, self.key_dim)
        v = self.value_proj(v).reshape(b, -1, self.key_dim)
        logits = self.logits(q, k) * (1.0 / self.key_dim ** 0.5)
        scores = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
        o = self.attend(scores, v).astype(self.dtype).reshape(b, h, w, -1)
        return self._join(self.output_proj(o), x, rngs)


class ConvNet(nnx.Module):
    """Stem conv -> blocks -> 1x1 head conv -> global average pool (float32) -> [pre-logits
    dense (+ BN) + act: MobileNetV3/V4] -> dropout -> classifier (float32 logits).

    The network of every family so far (`Architecture.network`). A network has `blocks`,
    `block_configs` and `layout_names`, which weight import and export read."""

    def __init__(self, arch: Architecture, knobs: Knobs, *, rngs: nnx.Rngs):
        knobs.check()
        dtype = jnp.dtype(knobs.dtype)
        inits = initializers(knobs.kernel_init)
        stem, configs, head, pre_logits = resolve(arch, knobs.stochastic_depth_rate,
                                                  knobs.activation, knobs.stochastic_depth_rule)
        self.block_configs = tuple(configs)
        self.dtype = dtype
        self.stem_activation = knobs.activation or arch.stem_activation
        self.head_activation = knobs.activation or arch.head_activation
        self.dropout_rate = knobs.dropout_rate
        self.stochastic_depth_rate = knobs.stochastic_depth_rate

        self.stem_conv = Conv2d(3, stem, 3, 2, padding=knobs.padding, kernel_init=inits["conv"],
                                dtype=dtype, rngs=rngs)
        self.stem_bn = batch_norm(stem, knobs)
        self.blocks = nnx.List([c.block_type(c, knobs, inits, rngs=rngs) for c in configs])
        self.head_conv = Conv2d(configs[-1].out_channels, head, 1, kernel_init=inits["conv"],
                                dtype=dtype, rngs=rngs)
        self.head_bn = batch_norm(head, knobs)
        features = head
        self.pre_logits = self.pre_logits_bn = nnx.data(None)
        if pre_logits:
            # A 1x1 conv on the pooled 1x1 map in the references: a dense layer here (same
            # weights reshaped), initialised like a conv, computed in float32.
            self.pre_logits = Dense(head, pre_logits, kernel_init=inits["conv"],
                                    use_bias=not arch.pre_logits_norm, rngs=rngs)
            if arch.pre_logits_norm:
                self.pre_logits_bn = batch_norm(pre_logits, knobs.replace(dtype="float32"))
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
        x = x.astype(wide(x.dtype)).mean(axis=(1, 2))  # [B, C]: no keepdims before the classifier
        if self.pre_logits is not None:
            x = self.pre_logits(x)
            if self.pre_logits_bn is not None:
                x = self.pre_logits_bn(x)
            x = ACTIVATIONS[self.head_activation](x)
        x = self.dropout(x, rngs=rngs)
        return self.classifier(x)

    def layout_names(self, layout: str) -> dict[tuple, str]:
        """The checkpoint module name of each weight-owning layer (by our path) in `layout`:
        timm (MobileNetV2/V3/V4, EfficientNet): conv_stem, bn1, blocks.S.I.<the block's
        names> (its stage and index in the reference layout), then conv_head, bn2 or, with a
        pre-logits layer, the 1x1 head conv as a stage of its own (blocks.S+1.0.conv/bn1) and
        conv_head, norm_head; classifier. EfficientNet-PyTorch ("lukemelas"): _conv_stem,
        _bn0, the numbered flat _blocks.N, _conv_head, _bn1, _fc."""
        timm = layout == "timm"
        if not timm and layout != "lukemelas":
            raise FlaxnetsError(f"unknown layout {layout!r}; expected 'timm' or 'lukemelas'")
        names = {("stem_conv",): "conv_stem" if timm else "_conv_stem",
                 ("stem_bn",): "bn1" if timm else "_bn0"}
        for i, (block, cfg) in enumerate(zip(self.blocks, self.block_configs)):
            prefix = f"blocks.{cfg.stage}.{cfg.index}" if timm else f"_blocks.{i}"
            for attr, name in block.layout_names(layout).items():
                names[("blocks", i) + tuple(attr.split("."))] = f"{prefix}.{name}"
        if not timm:
            if self.pre_logits is not None:
                raise FlaxnetsError("the EfficientNet-PyTorch layout has no pre-logits layer")
            names.update({("head_conv",): "_conv_head", ("head_bn",): "_bn1",
                          ("classifier",): "_fc"})
            return names
        if self.pre_logits is None:  # EfficientNet / MobileNetV2
            names.update({("head_conv",): "conv_head", ("head_bn",): "bn2"})
        else:  # MobileNetV3/V4: the 1x1 head conv is a stage of its own, the pre-logits conv_head
            head_stage = self.block_configs[-1].stage + 1
            names.update({("head_conv",): f"blocks.{head_stage}.0.conv",
                          ("head_bn",): f"blocks.{head_stage}.0.bn1",
                          ("pre_logits",): "conv_head", ("pre_logits_bn",): "norm_head"})
        names[("classifier",)] = "classifier"
        return names

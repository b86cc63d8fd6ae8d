"""The one block builder shared by every family, and its block registry.

A family is an `Architecture`: a stem, a table of `Stage` rows and a head. Each row names its
block type, one of `BLOCKS`; `resolve` applies width/depth scaling (`round_channels` /
`round_repeats`), the stochastic-depth rule and the knobs to produce one `BlockConfig` per
block; `ConvNet` builds the network from those configs. Each block type is defined once, by its
module class here: parameter and MAC counting trace the built model (`flaxnets.models.counting`),
and weight import/export take each layer's name in other layouts from the block's
`timm_names` (`flaxnets.weights.torch`).

Block types (timm's names in brackets):
- "inverted_residual" [InvertedResidual / DepthwiseSeparable]: optional 1x1 expansion,
  depthwise conv, optional squeeze-excite, 1x1 projection (MobileNetV2/V3, EfficientNet).
- "conv_bn" [ConvBnAct]: kxk conv, BN, activation, no residual.
- "fused_ib" [EdgeResidual]: kxk expansion conv (with the stride), 1x1 projection.
- "uib" [UniversalInvertedResidual]: MobileNetV4's universal inverted bottleneck: optional
  start depthwise (no activation), 1x1 expansion, optional middle depthwise, 1x1 projection;
  ExtraDW (both depthwise), IB (middle only), ConvNext-like (start only), FFN (neither).
- "mqa" [MobileAttention]: BN then mobile multi-query attention (one key/value head shared by
  all query heads), with keys and values optionally downsampled by a strided depthwise conv.
A residual (with stochastic depth) joins input and output when stride is 1 and the channels
match; layer scale, where the architecture has it, scales the branch of "uib" and "mqa" blocks
(before the residual, and even where there is none, as both references do).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from flaxnets.errors import FlaxnetsError
from flaxnets.models.layers import (
    ACTIVATIONS, BatchNorm, Conv2d, Dense, DepthwiseConv2d, LayerScale, MatMul, SqueezeExcite,
    activation_fn, initializers, make_divisible, round_channels, round_repeats,
)


@dataclass(frozen=True)
class Stage:
    """One row of a family table: `repeats` blocks of type `block`, the first with `stride`.

    `kernel_size` is the depthwise kernel ("inverted_residual"), the conv kernel ("conv_bn",
    "fused_ib"), the middle depthwise kernel ("uib", 0 = none) or the key/value downsampling
    depthwise kernel ("mqa"). `start_kernel_size` is the "uib" start depthwise (0 = none).
    `num_heads`, `key_dim` (= value dim) and `kv_stride` describe "mqa" blocks, whose
    `out_channels` equal their input channels.
    """

    repeats: int
    kernel_size: int
    stride: int
    expand_ratio: float
    out_channels: int
    se_ratio: float | None
    activation: str
    block: str = "inverted_residual"
    start_kernel_size: int = 0
    num_heads: int = 0
    key_dim: int = 0
    kv_stride: int = 1


@dataclass(frozen=True)
class Architecture:
    """A family's table and its scaling rules.

    Scale rules for stem/head/pre-logits widths: "always" (round_channels with the width
    multiplier), "above_one" (only when width > 1, Keras MobileNet heads) or "never".
    se_base: "in" (EfficientNet: block input channels, floor) or "mid" (MobileNetV3: expanded
    channels, make_divisible). se_activation None means the block's own activation.
    pre_logits_norm: the pre-logits layer has no bias and is followed by BatchNorm (MobileNetV4).
    layer_scale: initial layer scale of "uib" and "mqa" blocks (None: no layer scale).
    depth_rule: how stochastic depth grows (see `drop_path_rates`).
    stage_starts: table rows that begin a stage of the reference layout (timm's `blocks.S`);
    empty: a stage begins wherever the output channels change.
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
    se_base: str = "mid"
    se_activation: str | None = None
    se_gate: str = "sigmoid"
    fixed_depth_stages: tuple[int, ...] = ()
    layer_scale: float | None = None
    depth_rule: str = "blocks"
    stage_starts: tuple[int, ...] = ()


@dataclass(frozen=True)
class BlockConfig:
    """One resolved block; `stage` / `index` place it in the reference layout's
    `blocks.S.I`."""

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
    block: str = "inverted_residual"
    start_kernel_size: int = 0
    num_heads: int = 0
    key_dim: int = 0
    kv_stride: int = 1
    layer_scale: float | None = None
    stage: int = 0
    index: int = 0


def _scaled(channels: int, rule: str, width: float) -> int:
    if rule == "always" or (rule == "above_one" and width > 1.0):
        return round_channels(channels, width)
    return channels


#: Stochastic-depth rules (`Architecture.depth_rule`, the `stochastic_depth_rule` knob).
DEPTH_RULES = ("blocks", "tf_vision_specs", "flat")


def drop_path_rates(rule: str, rate: float, blocks: list[str]) -> list[float]:
    """The stochastic-depth rate of each block (`blocks`: their types, in order).

    "blocks" (TF-TPU EfficientNet / Keras applications): block b of n drops its residual
    branch with probability `rate * b / n` (block 0 never).
    "tf_vision_specs" (TF-Vision MobileNet with flat_stochastic_depth_drop_rate false,
    `official/vision/modeling/backbones/mobilenet.py` `_mobilenet_base`): spec i of n gets
    `rate * (i + 1) / n`, where the specs are the stem conv, every block and the three head
    specs (960 conv, pooling, 1280 conv), so block b is spec b + 1; attention blocks get the
    unscaled `rate` (`MultiHeadSelfAttentionBlock` receives the backbone's rate itself).
    "flat" (TF-Vision with flat_stochastic_depth_drop_rate true): `rate` for every block.
    """
    if rule == "flat":
        return [rate] * len(blocks)
    if rule == "blocks":
        return [rate * b / len(blocks) for b in range(len(blocks))]
    if rule == "tf_vision_specs":
        specs = len(blocks) + 4
        return [rate if kind == "mqa" else rate * (b + 2) / specs
                for b, kind in enumerate(blocks)]
    raise FlaxnetsError(f"unknown depth rule {rule!r}; expected one of {', '.join(DEPTH_RULES)}")


def resolve(arch: Architecture, stochastic_depth_rate: float = 0.0,
            activation: str | None = None, stochastic_depth_rule: str | None = None,
            ) -> tuple[int, list[BlockConfig], int, int | None]:
    """(stem channels, block configs, head channels, pre-logits channels) for `arch`.

    Stochastic depth follows `stochastic_depth_rule`, else `arch.depth_rule`
    (`drop_path_rates`).
    """
    stem = _scaled(arch.stem_channels, arch.stem_scale, arch.width)
    rows = []
    for i, stage in enumerate(arch.stages):
        repeats = stage.repeats if i in arch.fixed_depth_stages else round_repeats(
            stage.repeats, arch.depth)
        out = round_channels(stage.out_channels, arch.width)
        for j in range(repeats):
            rows.append((i, stage, out, stage.stride if j == 0 else 1))
    rates = drop_path_rates(stochastic_depth_rule or arch.depth_rule, stochastic_depth_rate,
                            [r[1].block for r in rows])
    blocks, in_ch = [], stem
    stage_index, index = -1, 0
    for b, (row, stage, out, stride) in enumerate(rows):
        if stage.block not in BLOCKS:
            raise FlaxnetsError(f"unknown block type {stage.block!r}; expected one of "
                                f"{', '.join(BLOCKS)}")
        if stage.block == "inverted_residual" and stage.expand_ratio == 1:
            mid = in_ch
        elif stage.block in ("conv_bn", "mqa"):
            mid = out
        else:
            mid = round_channels(in_ch * stage.expand_ratio)
        if stage.se_ratio:
            if arch.se_base == "in":
                se = max(1, int(in_ch * stage.se_ratio))
            else:
                se = make_divisible(mid * stage.se_ratio)
        else:
            se = 0
        starts = (row in arch.stage_starts and (b == 0 or rows[b - 1][0] != row)
                  if arch.stage_starts else b == 0 or out != blocks[-1].out_channels)
        stage_index, index = (stage_index + 1, 0) if starts else (stage_index, index + 1)
        act = activation or stage.activation
        blocks.append(BlockConfig(
            in_channels=in_ch, mid_channels=mid, out_channels=out,
            kernel_size=stage.kernel_size, stride=stride, activation=act,
            se_channels=se, se_activation=activation or arch.se_activation or stage.activation,
            se_gate=arch.se_gate,
            residual=stage.block != "conv_bn" and stride == 1 and in_ch == out,
            drop_path_rate=rates[b], block=stage.block,
            start_kernel_size=stage.start_kernel_size, num_heads=stage.num_heads,
            key_dim=stage.key_dim, kv_stride=stage.kv_stride,
            layer_scale=arch.layer_scale if stage.block in ("uib", "mqa") else None,
            stage=stage_index, index=index,
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
    stochastic_depth_rule: str | None = None
    activation: str | None = None
    kernel_init: str = "tf_tpu"
    dtype: str | jnp.dtype = "float32"
    padding: str = "same"
    bn_group_size: int | None = None

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
    """A BatchNorm with the knobs' momentum, epsilon, group size and compute dtype."""
    return BatchNorm(channels, momentum=knobs.bn_momentum, epsilon=knobs.bn_epsilon,
                     group_size=knobs.bn_group_size, dtype=jnp.dtype(knobs.dtype))


class _Block(nnx.Module):
    """What every block shares: its activation, residual with stochastic depth, optional
    layer scale, and `timm_names` (our attribute -> timm's module name inside the block)."""

    TIMM_NAMES: dict[str, str] = {}

    def _finish(self, cfg: BlockConfig):
        self.activation = cfg.activation
        self.residual = cfg.residual
        self.layer_scale = nnx.data(None)
        if cfg.layer_scale is not None:
            self.layer_scale = LayerScale(cfg.out_channels, cfg.layer_scale)
        self.drop_path = nnx.Dropout(cfg.drop_path_rate, broadcast_dims=(1, 2, 3))

    def _join(self, y, x, rngs):
        if self.layer_scale is not None:
            y = self.layer_scale(y)
        if self.residual:
            y = self.drop_path(y, rngs=rngs) + x
        return y

    def timm_names(self) -> dict[str, str]:
        """Our attribute name -> timm's module name, for the layers this block has."""
        names = dict(self.TIMM_NAMES)
        names["layer_scale"] = "layer_scale"
        return names


class InvertedResidual(_Block):
    """[1x1 expand, BN, act] -> depthwise kxk, BN, act -> [SE] -> 1x1 project, BN -> [+ input]."""

    def __init__(self, cfg: BlockConfig, knobs: Knobs, inits: dict[str, Callable],
                 *, rngs: nnx.Rngs):
        dtype = jnp.dtype(knobs.dtype)
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

    def timm_names(self) -> dict[str, str]:
        se = {"se.reduce": "se.conv_reduce", "se.expand": "se.conv_expand"}
        if self.has_expand:  # timm InvertedResidual
            return {"expand_conv": "conv_pw", "expand_bn": "bn1", "depthwise_conv": "conv_dw",
                    "depthwise_bn": "bn2", "project_conv": "conv_pwl", "project_bn": "bn3", **se}
        return {"depthwise_conv": "conv_dw", "depthwise_bn": "bn1", "project_conv": "conv_pw",
                "project_bn": "bn2", **se}  # timm DepthwiseSeparableConv


class ConvBnAct(_Block):
    """kxk conv (with the stride), BN, act; no residual."""

    TIMM_NAMES = {"conv": "conv", "bn": "bn1"}

    def __init__(self, cfg: BlockConfig, knobs: Knobs, inits: dict[str, Callable],
                 *, rngs: nnx.Rngs):
        self.conv = Conv2d(cfg.in_channels, cfg.out_channels, cfg.kernel_size, cfg.stride,
                           padding=knobs.padding, kernel_init=inits["conv"],
                           dtype=jnp.dtype(knobs.dtype), rngs=rngs)
        self.bn = batch_norm(cfg.out_channels, knobs)
        self._finish(cfg)

    def __call__(self, x, *, rngs: nnx.Rngs | None = None):
        return self._join(ACTIVATIONS[self.activation](self.bn(self.conv(x))), x, rngs)


class FusedInvertedResidual(_Block):
    """kxk expand (with the stride), BN, act -> 1x1 project, BN -> [+ input] (TF-Vision
    `InvertedBottleneckBlock` with use_depthwise=False)."""

    TIMM_NAMES = {"expand_conv": "conv_exp", "expand_bn": "bn1", "project_conv": "conv_pwl",
                  "project_bn": "bn2"}

    def __init__(self, cfg: BlockConfig, knobs: Knobs, inits: dict[str, Callable],
                 *, rngs: nnx.Rngs):
        dtype = jnp.dtype(knobs.dtype)
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


class UniversalInvertedResidual(_Block):
    """[start depthwise, BN] -> 1x1 expand, BN, act -> [middle depthwise, BN, act] -> 1x1
    project, BN -> [layer scale] -> [+ input]. The stride goes to the middle depthwise, or to
    the start one where there is no middle one (TF-Vision `UniversalInvertedBottleneckBlock`
    with middle_dw_downsample, timm `UniversalInvertedResidual`)."""

    TIMM_NAMES = {"start_conv": "dw_start.conv", "start_bn": "dw_start.bn",
                  "expand_conv": "pw_exp.conv", "expand_bn": "pw_exp.bn",
                  "middle_conv": "dw_mid.conv", "middle_bn": "dw_mid.bn",
                  "project_conv": "pw_proj.conv", "project_bn": "pw_proj.bn"}

    def __init__(self, cfg: BlockConfig, knobs: Knobs, inits: dict[str, Callable],
                 *, rngs: nnx.Rngs):
        dtype = jnp.dtype(knobs.dtype)
        if cfg.stride > 1 and not (cfg.kernel_size or cfg.start_kernel_size):
            raise FlaxnetsError("a strided uib block needs a start or middle depthwise conv")
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
        self._finish(cfg)

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


class MobileAttention(_Block):
    """BN -> mobile multi-query attention -> [layer scale] -> + input.

    `num_heads` query heads of `key_dim` (1x1 conv) share one key and one value head (1x1
    convs of `key_dim`); with kv_stride > 1 keys and values are first downsampled by a strided
    kxk depthwise conv and BN each. Logits are scaled by 1/sqrt(key_dim), softmax in float32,
    and the heads' outputs are concatenated (head-major) and projected back by a 1x1 conv.
    TF-Vision `MultiHeadSelfAttentionBlock` with use_multi_query (its
    `OptimizedMultiQueryAttentionLayerWithDownSampling` builds the downsampling BatchNorms with
    its own defaults, momentum 0.99 and epsilon 1e-3, whatever the backbone's; so do we), timm
    `MobileAttention` / `MultiQueryAttention2d`.
    """

    TIMM_NAMES = {"norm": "norm", "query_proj": "attn.query.proj",
                  "key_down_conv": "attn.key.down_conv", "key_down_bn": "attn.key.norm",
                  "key_proj": "attn.key.proj", "value_down_conv": "attn.value.down_conv",
                  "value_down_bn": "attn.value.norm", "value_proj": "attn.value.proj",
                  "output_proj": "attn.output.proj"}

    def __init__(self, cfg: BlockConfig, knobs: Knobs, inits: dict[str, Callable],
                 *, rngs: nnx.Rngs):
        dtype = jnp.dtype(knobs.dtype)
        c, heads, dim = cfg.in_channels, cfg.num_heads, cfg.key_dim
        if cfg.out_channels != c or cfg.stride != 1:
            raise FlaxnetsError(f"an mqa block keeps its {c} channels and resolution; got "
                                f"{cfg.out_channels} channels, stride {cfg.stride}")
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
        self._finish(cfg)

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


#: Block type (a `Stage.block`) -> its module class.
BLOCKS: dict[str, type[_Block]] = {
    "inverted_residual": InvertedResidual,
    "conv_bn": ConvBnAct,
    "fused_ib": FusedInvertedResidual,
    "uib": UniversalInvertedResidual,
    "mqa": MobileAttention,
}


class ConvNet(nnx.Module):
    """Stem conv -> blocks -> 1x1 head conv -> global average pool (float32) -> [pre-logits
    dense (+ BN) + act: MobileNetV3/V4] -> dropout -> classifier (float32 logits)."""

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
        self.blocks = nnx.List([BLOCKS[c.block](c, knobs, inits, rngs=rngs) for c in configs])
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
        x = x.astype(jnp.float32).mean(axis=(1, 2))  # [B, C]: no keepdims before the classifier
        if self.pre_logits is not None:
            x = self.pre_logits(x)
            if self.pre_logits_bn is not None:
                x = self.pre_logits_bn(x)
            x = ACTIVATIONS[self.head_activation](x)
        x = self.dropout(x, rngs=rngs)
        return self.classifier(x)

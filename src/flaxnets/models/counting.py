"""Parameter kinds, parameter counts, multiply-accumulates (MACs) and per-layer summaries.

Counting by name works from the architecture table alone (no parameter is materialised, so
EfficientNet-B7 counts in milliseconds); `traced_summary` computes the same rows from a model
object by abstract evaluation, and the tests hold the two equal.

MAC convention (per image, at the given resolution): a convolution costs
H_out * W_out * k * k * C_in / groups * C_out, a dense layer in * out; squeeze-excite 1x1
convolutions count (on their 1x1 input); BatchNorm, activations, pooling, the SE multiply,
residual additions and biases count zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from flaxnets.errors import FlaxnetsError
from flaxnets.models.layers import BatchNorm, DepthwiseConv2d, recording


def param_kinds(model: nnx.Module) -> dict[tuple, str]:
    """The kind of every `nnx.Param` in `model`, decided by the type of its owning module.

    Keys are the paths of `nnx.to_flat_state(nnx.state(model, nnx.Param))`: tuples of
    attribute names (str) and list indices (int), e.g. `("blocks", 3, "depthwise_conv",
    "kernel")`. Kinds: conv_kernel, depthwise_kernel, dense_kernel, bias, bn_scale, bn_bias.
    Raises FlaxnetsError if a parameter belongs to a module type this function does not know,
    so a new layer cannot silently escape a weight-decay mask.
    """
    kinds: dict[tuple, str] = {}
    for path, module in nnx.iter_modules(model):
        path = tuple(path)
        if isinstance(module, BatchNorm):
            kinds[path + ("scale",)] = "bn_scale"
            kinds[path + ("bias",)] = "bn_bias"
        elif isinstance(module, (nnx.Conv, nnx.Linear)):
            if isinstance(module, DepthwiseConv2d):
                kernel = "depthwise_kernel"
            elif isinstance(module, nnx.Conv):
                kernel = "conv_kernel"
            else:
                kernel = "dense_kernel"
            kinds[path + ("kernel",)] = kernel
            if getattr(module, "bias", None) is not None:
                kinds[path + ("bias",)] = "bias"
    result = {}
    for path, _ in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        path = tuple(path)
        if path not in kinds:
            raise FlaxnetsError(f"parameter {'/'.join(map(str, path))} has no known kind")
        result[path] = kinds[path]
    return result


def count_params(model_or_name, **overrides) -> int:
    """Trainable parameters (every `nnx.Param`) of a model object, or of a registry name
    (computed from the architecture table, without building the model)."""
    if isinstance(model_or_name, str):
        return sum(r.params for r in layer_summary(model_or_name, 32, **overrides))
    return sum(math.prod(v.shape)
               for _, v in nnx.to_flat_state(nnx.state(model_or_name, nnx.Param)))


@dataclass(frozen=True)
class LayerRow:
    """One leaf layer: its path ("/"-joined param path prefix), type, output shape per image
    (H, W, C or C), trainable params and MACs per image."""

    path: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


def _out_size(size: int, kernel: int, stride: int, padding: str) -> int:
    if padding == "same":
        return -(-size // stride)
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def layer_summary(name: str, resolution: int | None = None, **overrides) -> list[LayerRow]:
    """Per-layer rows, in call order, for one image of the registered model `name` at
    `resolution` (default: the spec's), computed from the architecture table without building
    the model. `traced_summary` gives the same rows by tracing a model object."""
    from flaxnets.models.blocks import resolve
    from flaxnets.models.registry import MIN_RESOLUTION, get_spec

    spec = get_spec(name)
    knobs = spec.knobs(**overrides)
    resolution = spec.resolution if resolution is None else resolution
    if resolution < MIN_RESOLUTION:
        raise FlaxnetsError(f"resolution {resolution} is too small; expected at least {MIN_RESOLUTION}")
    stem, configs, head, pre_logits = resolve(spec.architecture(), knobs.stochastic_depth_rate,
                                              knobs.activation)
    rows: list[LayerRow] = []
    size = resolution

    def conv(path, cin, cout, k, stride=1, groups=1, bias=False, kind="Conv2d"):
        nonlocal size
        size = _out_size(size, k, stride, knobs.padding)
        params = k * k * cin // groups * cout + (cout if bias else 0)
        rows.append(LayerRow(path, kind, (size, size, cout), params,
                             size * size * k * k * cin // groups * cout))

    def bn(path, c):
        rows.append(LayerRow(path, "BatchNorm", (size, size, c), 2 * c, 0))

    def dense(path, cin, cout):
        rows.append(LayerRow(path, "Dense", (cout,), cin * cout + cout, cin * cout))

    conv("stem_conv", 3, stem, 3, 2)
    bn("stem_bn", stem)
    for i, c in enumerate(configs):
        p = f"blocks/{i}/"
        if c.mid_channels != c.in_channels:
            conv(p + "expand_conv", c.in_channels, c.mid_channels, 1)
            bn(p + "expand_bn", c.mid_channels)
        conv(p + "depthwise_conv", c.mid_channels, c.mid_channels, c.kernel_size, c.stride,
             groups=c.mid_channels, kind="DepthwiseConv2d")
        bn(p + "depthwise_bn", c.mid_channels)
        if c.se_channels:
            spatial = size
            size = 1
            conv(p + "se/reduce", c.mid_channels, c.se_channels, 1, bias=True)
            conv(p + "se/expand", c.se_channels, c.mid_channels, 1, bias=True)
            size = spatial
        conv(p + "project_conv", c.mid_channels, c.out_channels, 1)
        bn(p + "project_bn", c.out_channels)
    conv("head_conv", configs[-1].out_channels, head, 1)
    bn("head_bn", head)
    features = head
    if pre_logits:
        dense("pre_logits", head, pre_logits)
        features = pre_logits
    dense("classifier", features, knobs.num_classes)
    return rows


def traced_summary(model: nnx.Module, resolution: int) -> list[LayerRow]:
    """Per-layer rows for one image through a model object, by abstract evaluation in eval
    mode (no computation runs; the model's own state is untouched)."""
    graphdef, state = nnx.split(model)
    rows: list[LayerRow] = []

    def trace(state, x):
        clone = nnx.merge(graphdef, state)
        clone.eval()
        paths = {id(m): p for p, m in nnx.iter_modules(clone)}
        with recording() as calls:
            clone(x)
        rows.extend(_row(paths[id(layer)], layer, y.shape) for layer, y in calls)

    jax.eval_shape(trace, state, jax.ShapeDtypeStruct((1, resolution, resolution, 3), jnp.float32))
    return rows


def _row(path, layer, out_shape) -> LayerRow:
    params = sum(math.prod(v.shape) for _, v in nnx.to_flat_state(nnx.state(layer, nnx.Param)))
    if isinstance(layer, nnx.Conv):
        kh, kw = layer.kernel_size
        spatial = math.prod(out_shape[1:-1])
        macs = spatial * kh * kw * layer.in_features // layer.feature_group_count * layer.out_features
    elif isinstance(layer, nnx.Linear):
        macs = layer.in_features * layer.out_features
    else:
        macs = 0
    return LayerRow("/".join(map(str, path)), type(layer).__name__, tuple(out_shape[1:]),
                    params, macs)


def count_macs(name: str, resolution: int | None = None, **overrides) -> int:
    """Multiply-accumulates per image of registered model `name` at `resolution` (default:
    the spec's); see the module docstring for the convention."""
    return sum(r.macs for r in layer_summary(name, resolution, **overrides))

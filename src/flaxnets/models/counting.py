"""Parameter kinds, parameter counts, multiply-accumulates (MACs) and per-layer summaries.

Everything here is read off the built model: a registered model is built with zero kernels
(`layers.shapes_only`: no random draw) and `jax.eval_shape` runs its forward pass without
computing, while every leaf layer records its output (`layers.recording`). So a block is
counted exactly as it is defined. (Building under `nnx.eval_shape` instead is several times
slower: every abstract Variable costs a scan of the whole trace so far.)

MAC convention (per image, at the given resolution): a convolution costs
H_out * W_out * k * k * C_in / groups * C_out, a dense layer in * out, a product of two
activations (attention logits and attention-weighted values, `layers.MatMul`) one per output
element and summed index; squeeze-excite 1x1 convolutions count (on their 1x1 input);
BatchNorm, activations, softmax, layer scale, pooling, the SE multiply, residual additions and
biases count zero.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from flaxnets.errors import FlaxnetsError
from flaxnets.models.layers import conv_implementation, recording, shapes_only
from flaxnets.models.registry import MIN_RESOLUTION, create_model, get_spec


def param_kinds(model: nnx.Module) -> dict[tuple, str]:
    """The kind of every `nnx.Param` in `model`, as the class of its owning module declares it
    (`PARAM_KINDS`: attribute -> kind, see `flaxnets.models.layers`).

    Keys are the paths of `nnx.to_flat_state(nnx.state(model, nnx.Param))`: tuples of
    attribute names (str) and list indices (int), e.g. `("blocks", 3, "depthwise_conv",
    "kernel")`. Kinds: conv_kernel, depthwise_kernel, dense_kernel, bias, bn_scale, bn_bias,
    layer_scale.
    Raises FlaxnetsError if a parameter's module does not declare its kind, so a new layer
    cannot silently escape a weight-decay mask.
    """
    kinds: dict[tuple, str] = {}
    for path, module in nnx.iter_modules(model):
        for attr, kind in getattr(type(module), "PARAM_KINDS", {}).items():
            kinds[tuple(path) + (attr,)] = kind
    result = {}
    for path, _ in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        path = tuple(path)
        if path not in kinds:
            raise FlaxnetsError(f"parameter {'/'.join(map(str, path))} has no known kind")
        result[path] = kinds[path]
    return result


def count_params(model_or_name, **overrides) -> int:
    """Trainable parameters (every `nnx.Param`) of a model object, or of a registry name
    (traced abstractly, without materialising the model)."""
    if isinstance(model_or_name, str):
        return sum(r.params for r in layer_summary(model_or_name, **overrides))
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


def layer_summary(name: str, resolution: int | None = None, **overrides) -> list[LayerRow]:
    """Per-layer rows, in call order, for one image of the registered model `name` at
    `resolution` (default: the spec's), traced from the model built with zero kernels."""
    resolution = get_spec(name).resolution if resolution is None else resolution
    if resolution < MIN_RESOLUTION:
        raise FlaxnetsError(f"resolution {resolution} is too small; expected at least {MIN_RESOLUTION}")
    return list(_summary(name, resolution, tuple(sorted(overrides.items()))))


# Tracing takes a second or more per model; `flaxnets models` and the tests ask for the same
# models' rows several times.
@functools.lru_cache(maxsize=64)
def _summary(name: str, resolution: int, overrides: tuple) -> tuple[LayerRow, ...]:
    return tuple(traced_summary(zero_model(name, **dict(overrides)), resolution))


def zero_model(name: str, **overrides) -> nnx.Module:
    """The registered model `name` with every kernel zero: for reading shapes only."""
    with shapes_only():
        return create_model(name, **overrides)


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
        rows.extend(_row(paths[id(layer)], layer, y.shape, macs) for layer, y, macs in calls)

    # One lax convolution per layer: the CPU's unrolled forms only take longer to trace.
    with conv_implementation("lax"):
        jax.eval_shape(trace, state,
                       jax.ShapeDtypeStruct((1, resolution, resolution, 3), jnp.float32))
    return rows


def _row(path, layer, out_shape, macs: int | None) -> LayerRow:
    params = sum(math.prod(v.shape) for _, v in nnx.to_flat_state(nnx.state(layer, nnx.Param)))
    if macs is None and isinstance(layer, nnx.Conv):
        kh, kw = layer.kernel_size
        spatial = math.prod(out_shape[1:-1])
        macs = spatial * kh * kw * layer.in_features // layer.feature_group_count * layer.out_features
    elif macs is None and isinstance(layer, nnx.Linear):
        macs = layer.in_features * layer.out_features
    elif macs is None:
        macs = 0
    return LayerRow("/".join(map(str, path)), type(layer).__name__, tuple(out_shape[1:]),
                    params, macs)


def count_macs(name: str, resolution: int | None = None, **overrides) -> int:
    """Multiply-accumulates per image of registered model `name` at `resolution` (default:
    the spec's); see the module docstring for the convention."""
    return sum(r.macs for r in layer_summary(name, resolution, **overrides))

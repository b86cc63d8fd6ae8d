"""Shared layers: convolutions, BatchNorm with per-group statistics, squeeze-excite, activations
and initialiser schemes.

Each layer class that owns parameters declares their kinds (`PARAM_KINDS`: attribute -> kind,
one of `flaxnets.config.PARAM_KINDS`); `flaxnets.models.param_kinds` reads those declarations
off the built model, never parameter names.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import os
from typing import Callable

import jax
import numpy as np
import jax.numpy as jnp
from flax import nnx

from flaxnets.errors import FlaxnetsError


def hard_sigmoid(x):
    """relu6(x + 3) / 6, as in the MobileNetV3 paper and the TF/Keras references."""
    return jax.nn.relu6(x + 3.0) * (1.0 / 6.0)


# How `hard_swish` is traced. The default x * (relu6(x + 3) / 6) is what the LiteRT converter
# fuses into one HARD_SWISH op, which XNNPACK runs in float32 but not in int8 (an int8 graph then
# falls into one delegate partition per hard-swish, with LiteRT's own kernels between them). The
# split form (x / 6) * relu6(x + 3), the same function, escapes that fusion and becomes MUL, ADD
# with a fused RELU6, MUL: int8 ops XNNPACK takes. The int8 LiteRT export traces in that form.
_HARD_SWISH_SPLIT = contextvars.ContextVar("flaxnets_hard_swish_split", default=False)


def hard_swish(x):
    """x * hard_sigmoid(x); traced as (x / 6) * relu6(x + 3) within `hard_swish_split()`."""
    if _HARD_SWISH_SPLIT.get():
        return (x * (1.0 / 6.0)) * jax.nn.relu6(x + 3.0)
    return x * hard_sigmoid(x)


@contextlib.contextmanager
def hard_swish_split():
    """Trace hard-swish in this scope as (x / 6) * relu6(x + 3) (see above); read when a model is
    traced, as `conv_implementation` is."""
    token = _HARD_SWISH_SPLIT.set(True)
    try:
        yield
    finally:
        _HARD_SWISH_SPLIT.reset(token)


def swish(x):
    """x * sigmoid(x) (`jax.nn.swish`). A function of this module, as `hard_swish` is, so that
    quantization-aware training (`flaxnets.quant`) finds it by name: Qwix intercepts
    `jax.nn.silu` only where it is looked up as that attribute, not through this table."""
    return jax.nn.swish(x)


def sigmoid(x):
    """`jax.nn.sigmoid`, the squeeze-excite gate; a function of this module for the reason
    `swish` gives (Qwix's op table has no sigmoid)."""
    return jax.nn.sigmoid(x)


ACTIVATIONS: dict[str, Callable] = {
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "hard_swish": hard_swish,
    "swish": swish,
    # Exact (erf) GELU, as tf.nn.gelu's default and torch.nn.GELU (MobileNetV4 Hybrid-L).
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
}
GATES: dict[str, Callable] = {"sigmoid": sigmoid, "hard_sigmoid": hard_sigmoid}
PADDINGS = ("same", "symmetric")


def activation_fn(name: str) -> Callable:
    """The activation function called `name` (one of ACTIVATIONS)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise FlaxnetsError(
            f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}"
        ) from None


# --- initialiser schemes -------------------------------------------------------------------
# TF stores a depthwise kernel as (h, w, C, 1) while Flax stores it as (h, w, 1, C). Swapping the
# fan axes makes variance scaling compute the same fans as TF/Keras does for its layout.
_DEPTHWISE_AXES = {"in_axis": -1, "out_axis": -2}


# Initialisers draw with NumPy, seeded from the JAX key NNX hands them. The jax.random versions
# compile one XLA program per distinct shape, which made creating a model take 20+ seconds on a
# CPU; the distributions here are the same (jax.nn.initializers' fan and truncation conventions).
def _numpy_rng(key) -> np.random.Generator:
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.random.default_rng(np.asarray(key, dtype=np.uint32).ravel().tolist())


def _fans(shape, in_axis=-2, out_axis=-1):
    receptive_field = int(np.prod(shape)) // (shape[in_axis] * shape[out_axis])
    return shape[in_axis] * receptive_field, shape[out_axis] * receptive_field


# Inside `shapes_only()` (a model built under `nnx.eval_shape` whose values nobody reads, as
# counting does) every kernel initialiser returns zeros: tracing the random draws of EfficientNet-B7
# takes ten times longer than the rest of its abstract build.
_SHAPES_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("flaxnets_shapes_only",
                                                                   default=False)


@contextlib.contextmanager
def shapes_only():
    """Kernel initialisers return zeros in this scope: for building models abstractly."""
    token = _SHAPES_ONLY.set(True)
    try:
        yield
    finally:
        _SHAPES_ONLY.reset(token)


def _zeros(key, shape, dtype):
    if isinstance(key, jax.core.Tracer):
        return jnp.zeros(shape, dtype)
    # From the host: a device-side fill (or jnp.asarray) compiles one XLA program per shape.
    return jax.device_put(np.zeros(shape, np.dtype(dtype)))


def _variance_scaling(scale: float, mode: str, distribution: str, in_axis=-2, out_axis=-1):
    traced_init = jax.nn.initializers.variance_scaling(scale, mode, distribution,
                                                      in_axis=in_axis, out_axis=out_axis)

    def init(key, shape, dtype=jnp.float32):
        if _SHAPES_ONLY.get():
            return _zeros(key, shape, dtype)
        if isinstance(key, jax.core.Tracer):  # under jit / eval_shape: stay in JAX
            return traced_init(key, shape, dtype)
        fan_in, fan_out = _fans(shape, in_axis, out_axis)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        variance = scale / max(1.0, fan)
        rng = _numpy_rng(key)
        if distribution == "truncated_normal":
            # Standard normal truncated to [-2, 2], rescaled to unit variance (as JAX and TF do).
            values = rng.standard_normal(shape)
            outside = np.abs(values) > 2.0
            while outside.any():
                values[outside] = rng.standard_normal(int(outside.sum()))
                outside = np.abs(values) > 2.0
            values *= np.sqrt(variance) / 0.87962566103423978
        elif distribution == "normal":
            values = rng.standard_normal(shape) * np.sqrt(variance)
        elif distribution == "uniform":
            limit = np.sqrt(3.0 * variance)
            values = rng.uniform(-limit, limit, shape)
        else:
            raise ValueError(f"unknown distribution {distribution!r}")
        # Cast on the host: a device-side cast would compile one XLA program per shape.
        return jnp.asarray(values.astype(np.dtype(dtype)))

    return init


def _uniform_symmetric(limit: float):
    def init(key, shape, dtype=jnp.float32):
        if _SHAPES_ONLY.get():
            return _zeros(key, shape, dtype)
        if isinstance(key, jax.core.Tracer):  # under jit / eval_shape: stay in JAX
            return jax.random.uniform(key, shape, dtype, -limit, limit)
        return jnp.asarray(_numpy_rng(key).uniform(-limit, limit, shape).astype(np.dtype(dtype)))

    return init


def initializers(scheme: str) -> dict[str, Callable]:
    """Kernel initialisers for one scheme, keyed by layer kind: conv, depthwise, dense.

    - "tf_tpu" (TF-TPU EfficientNet, `conv_kernel_initializer` / `dense_kernel_initializer` in
      models/official/efficientnet/efficientnet_model.py of tensorflow/tpu): conv and depthwise an
      *untruncated* normal with std sqrt(2 / fan_out) (`tf.random_normal`; the depthwise kernel's
      fan_out is k*k, its TF layout having one output per channel); dense uniform(+-1/sqrt(fan_out)).
      Keras applications' EfficientNet truncates the normal instead; the std is the same.
    - "tf_vision" (TF-Vision MobileNet backbone + classification head): Keras
      `VarianceScaling()` (scale 1.0, fan_in, truncated normal) for conv and depthwise; the
      classifier uses Keras `random_uniform` (uniform(-0.05, 0.05)).
    - "flax": Flax defaults (LeCun normal) for every kernel.
    Biases start at zero in every scheme.
    """
    vs = _variance_scaling
    if scheme == "tf_tpu":
        return {
            "conv": vs(2.0, "fan_out", "normal"),
            "depthwise": vs(2.0, "fan_out", "normal", **_DEPTHWISE_AXES),
            "dense": vs(1.0 / 3.0, "fan_out", "uniform"),
        }
    if scheme == "tf_vision":
        return {
            "conv": vs(1.0, "fan_in", "truncated_normal"),
            "depthwise": vs(1.0, "fan_in", "truncated_normal", **_DEPTHWISE_AXES),
            "dense": _uniform_symmetric(0.05),
        }
    if scheme == "flax":
        default = vs(1.0, "fan_in", "truncated_normal")  # LeCun normal, as Flax
        return {"conv": default, "depthwise": default, "dense": default}
    raise FlaxnetsError(f"unknown kernel_init {scheme!r}; expected one of tf_tpu, tf_vision, flax")


# While `recording()` is active, every leaf layer appends (layer, output, macs) when called; the
# counting module uses this under abstract evaluation to list per-layer shapes. `macs` is None
# for a layer whose cost follows from its own kernel (convolutions, dense layers).
_RECORD: contextvars.ContextVar[list | None] = contextvars.ContextVar("flaxnets_record",
                                                                      default=None)


@contextlib.contextmanager
def recording():
    """Collect (layer, output, macs) for every Conv2d/DepthwiseConv2d/BatchNorm/Dense/
    LayerScale/MatMul call."""
    calls: list = []
    token = _RECORD.set(calls)
    try:
        yield calls
    finally:
        _RECORD.reset(token)


def _record(layer, y, macs: int | None = None):
    calls = _RECORD.get()
    if calls is not None:
        calls.append((layer, y, macs))
    return y


def _padding(kernel_size: int, padding: str):
    if padding == "same":
        return "SAME"  # TF SAME: for stride 2 the extra pixel goes bottom/right
    if padding == "symmetric":
        p = kernel_size // 2  # PyTorch-style
        return ((p, p), (p, p))
    raise FlaxnetsError(f"unknown padding {padding!r}; expected one of {', '.join(PADDINGS)}")


# How convolutions are computed. "lax": every convolution is `lax.conv_general_dilated` (what
# GPUs and TPUs run fastest). "unrolled": a depthwise convolution is the sum of its k*k shifted,
# per-channel-scaled input slices (`depthwise_shifts`) and a 1x1 stride-1 convolution is a
# matrix product over the channel axis (`pointwise_matmul`); other convolutions stay "lax".
# "auto" (the default): "unrolled" on the CPU backend, "lax" elsewhere. XLA's CPU backend runs
# grouped convolutions through a slow generic loop and 1x1 convolutions through a slower kernel
# than its matrix products: on 2 cores the unrolled forms are 5-45x (depthwise) and 1.2-4x
# (pointwise) faster, forward or backward (benchmarks/bench_conv_impl.py, docs/BENCHMARKS.md),
# with the same result up to float rounding. The environment variable FLAXNETS_CONV_IMPL sets
# the default; `conv_implementation` overrides it in a scope, read when a model is traced (a
# function jit has already traced and cached keeps its form). The ONNX exporter traces with
# "lax", so its graph has one Conv per convolution.
CONV_IMPLEMENTATIONS = ("auto", "lax", "unrolled")
_CONV_IMPL = contextvars.ContextVar("flaxnets_conv_impl", default=None)


def _conv_setting() -> str:
    value = _CONV_IMPL.get() or os.environ.get("FLAXNETS_CONV_IMPL", "auto")
    if value not in CONV_IMPLEMENTATIONS:
        raise FlaxnetsError(f"FLAXNETS_CONV_IMPL={value!r}; expected one of "
                            f"{', '.join(CONV_IMPLEMENTATIONS)}")
    return value


@contextlib.contextmanager
def conv_implementation(name: str):
    """Compute the convolutions traced in this scope with `name` (see above)."""
    if name not in CONV_IMPLEMENTATIONS:
        raise FlaxnetsError(f"convolution implementation {name!r}; expected one of "
                            f"{', '.join(CONV_IMPLEMENTATIONS)}")
    token = _CONV_IMPL.set(name)
    try:
        yield
    finally:
        _CONV_IMPL.reset(token)


def conv_unrolled() -> bool:
    """Whether depthwise and pointwise convolutions traced now take the unrolled forms."""
    setting = _conv_setting()
    return setting == "unrolled" or (setting == "auto" and jax.default_backend() == "cpu")


def wide(dtype):
    """The dtype statistics, pooling, logits and losses are computed in: float32, or float64 for a
    float64 computation (the float64 reference trajectories, docs/REFERENCE_TRAJECTORIES.md; JAX
    needs `jax_enable_x64` for it)."""
    return jnp.promote_types(dtype, jnp.float32)


def depthwise_shifts(x, kernel, strides, padding):
    """A depthwise convolution (NHWC input, HWIO kernel with I = 1, O = C) as a sum of k*k
    strided slices of the zero-padded input, each scaled by one kernel tap per channel.
    Products and sums are in float32 (or wider) and the result is cast back to x's dtype,
    as a convolution accumulates."""
    kh, kw = kernel.shape[:2]
    if isinstance(padding, str):  # "SAME" / "VALID", resolved exactly as the convolution does
        padding = jax.lax.padtype_to_pads(x.shape[1:3], (kh, kw), strides, padding)
    x_pad = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    out_h = (x_pad.shape[1] - kh) // strides[0] + 1
    out_w = (x_pad.shape[2] - kw) // strides[1] + 1
    acc_dtype = jnp.promote_types(x.dtype, jnp.float32)
    taps = kernel.reshape(kh, kw, -1).astype(acc_dtype)
    out = None
    for i in range(kh):
        for j in range(kw):
            window = jax.lax.slice(
                x_pad, (0, i, j, 0),
                (x_pad.shape[0], i + (out_h - 1) * strides[0] + 1,
                 j + (out_w - 1) * strides[1] + 1, x_pad.shape[3]),
                (1, strides[0], strides[1], 1))
            term = window.astype(acc_dtype) * taps[i, j]
            out = term if out is None else out + term
    return out.astype(x.dtype)


def pointwise_matmul(x, kernel, precision=None):
    """A 1x1 stride-1 convolution (NHWC input, kernel (1, 1, C_in, C_out)) as a matrix product
    over the channel axis, accumulated in float32 (or wider), returned in x's dtype."""
    acc_dtype = jnp.promote_types(x.dtype, jnp.float32)
    out = jax.lax.dot_general(x, kernel[0, 0], (((x.ndim - 1,), (0,)), ((), ())),
                              precision=precision, preferred_element_type=acc_dtype)
    return out.astype(x.dtype)


def _no_dilation(*dilations) -> bool:
    return all(all(d == 1 for d in (dilation or (1, 1))) for dilation in dilations)


def _conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                          rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                          precision=None, **kwargs):
    """`lax.conv_general_dilated` for Conv2d / DepthwiseConv2d (NHWC, HWIO), taking the
    unrolled forms where `conv_unrolled()` and the convolution is one they cover."""
    if (conv_unrolled() and _no_dilation(lhs_dilation, rhs_dilation)
            and kwargs.get("preferred_element_type") is None):
        strides = tuple(window_strides)
        if (feature_group_count > 1 and feature_group_count == lhs.shape[-1] == rhs.shape[-1]
                and rhs.shape[2] == 1):
            return depthwise_shifts(lhs, rhs, strides, padding)
        pads_free = isinstance(padding, str) or all(tuple(p) == (0, 0) for p in padding)
        if (feature_group_count == 1 and rhs.shape[:2] == (1, 1) and strides == (1, 1)
                and pads_free):
            return pointwise_matmul(lhs, rhs, precision)
    return jax.lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count, precision=precision, **kwargs)


class Conv2d(nnx.Conv):
    """A dense (groups=1) 2-D convolution, NHWC, parameters float32, computed in `dtype`.
    A 1x1 stride-1 convolution may run as a matrix product (`conv_unrolled`)."""

    PARAM_KINDS = {"kernel": "conv_kernel", "bias": "bias"}

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, *,
                 padding: str = "same", use_bias: bool = False, kernel_init: Callable,
                 dtype=jnp.float32, rngs: nnx.Rngs):
        super().__init__(
            in_channels, out_channels, (kernel_size, kernel_size), (stride, stride),
            padding=_padding(kernel_size, padding), use_bias=use_bias, dtype=dtype,
            param_dtype=jnp.float32, kernel_init=kernel_init, rngs=rngs,
            conv_general_dilated=_conv_general_dilated,
        )

    def __call__(self, x):
        return _record(self, super().__call__(x))


class DepthwiseConv2d(nnx.Conv):
    """A depthwise convolution (one filter per channel); kernel shape (k, k, 1, C).

    Computed as a grouped convolution or as a sum of shifts (`conv_unrolled`)."""

    PARAM_KINDS = {"kernel": "depthwise_kernel", "bias": "bias"}

    def __init__(self, channels: int, kernel_size: int, stride: int = 1, *, padding: str = "same",
                 kernel_init: Callable, dtype=jnp.float32, rngs: nnx.Rngs):
        super().__init__(
            channels, channels, (kernel_size, kernel_size), (stride, stride),
            padding=_padding(kernel_size, padding), feature_group_count=channels, use_bias=False,
            dtype=dtype, param_dtype=jnp.float32, kernel_init=kernel_init, rngs=rngs,
            conv_general_dilated=_conv_general_dilated,
        )

    def __call__(self, x):
        return _record(self, super().__call__(x))


class Dense(nnx.Linear):
    """A fully connected layer on pooled features, parameters and compute in float32 (float64
    where its input or parameters are: `wide`)."""

    PARAM_KINDS = {"kernel": "dense_kernel", "bias": "bias"}

    def __init__(self, in_features: int, out_features: int, *, kernel_init: Callable,
                 use_bias: bool = True, rngs: nnx.Rngs):
        super().__init__(in_features, out_features, use_bias=use_bias, kernel_init=kernel_init,
                         dtype=None, param_dtype=jnp.float32, rngs=rngs)

    def __call__(self, x):
        return _record(self, super().__call__(x))


#: What a BatchNorm's moving variance moves towards (`BatchNorm(moving_variance=...)`).
MOVING_VARIANCES = ("biased", "unbiased")


class BatchNorm(nnx.Module):
    """Batch normalisation over NHWC features, statistics always in float32.

    `group_size=None` computes batch statistics over the whole batch. `group_size=N` splits the
    batch into consecutive groups of N examples and normalises each group with its own moments,
    as the TF references do per replica; the running statistics move towards the mean of the
    group moments. Running stats: `new = momentum * old + (1 - momentum) * batch` (Keras/TF
    convention). `use_running_average` is switched by `model.train()` / `model.eval()`.

    The batch is always normalised with the biased variance (sum / n, n the examples x positions
    a moment averages over: the whole batch's or one group's). `moving_variance="unbiased"` moves
    the running variance towards n / (n - 1) times it instead, as the fused BatchNorm of TF and
    Keras does (TF-Vision; `ModelConfig.bn_moving_variance` cites the code); n = 1 keeps the
    variance, as the fused op does. After a convolution n is large and the factor near 1; on
    pooled 1x1 features n is the group's examples (128 / 127 for MobileNetV4's pre-logits norm).
    """

    PARAM_KINDS = {"scale": "bn_scale", "bias": "bn_bias"}

    def __init__(self, num_features: int, *, momentum: float = 0.99, epsilon: float = 1e-3,
                 group_size: int | None = None, moving_variance: str = "biased", dtype=jnp.float32,
                 use_running_average: bool = False):
        if moving_variance not in MOVING_VARIANCES:
            raise FlaxnetsError(f"moving_variance={moving_variance!r}; expected {' or '.join(MOVING_VARIANCES)}")
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
        self.momentum = momentum
        self.epsilon = epsilon
        self.group_size = group_size
        self.moving_variance = moving_variance
        self.dtype = dtype
        self.use_running_average = use_running_average

    def __call__(self, x):
        return _record(self, self._normalize(x))

    def _normalize(self, x):
        x32 = x.astype(wide(x.dtype))
        if self.use_running_average:
            mean, var = self.mean.value, self.var.value
        elif self.group_size is None:
            axes = tuple(range(x.ndim - 1))
            mean = x32.mean(axis=axes)
            var = jnp.square(x32 - mean).mean(axis=axes)
            self._update(mean, var, math.prod(x.shape[:-1]))
        else:
            batch = x.shape[0]
            if batch % self.group_size:
                raise FlaxnetsError(
                    f"batch size {batch} is not a multiple of bn_group_size {self.group_size}"
                )
            groups = x32.reshape((batch // self.group_size, self.group_size) + x.shape[1:])
            axes = tuple(range(1, groups.ndim - 1))
            mean = groups.mean(axis=axes, keepdims=True)
            var = jnp.square(groups - mean).mean(axis=axes, keepdims=True)
            self._update(mean.reshape(-1, x.shape[-1]).mean(0), var.reshape(-1, x.shape[-1]).mean(0),
                         self.group_size * math.prod(x.shape[1:-1]))
            y = (groups - mean) * jax.lax.rsqrt(var + self.epsilon)
            y = y.reshape(x.shape) * self.scale.value + self.bias.value
            return y.astype(self.dtype)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.epsilon) * self.scale.value + self.bias.value
        return y.astype(self.dtype)

    def _update(self, mean, var, n: int):
        """Move the running statistics towards a batch's `mean` and biased `var`, both averaged
        over `n` values per feature."""
        m = self.momentum
        if self.moving_variance == "unbiased":
            var = var * (n / max(n - 1, 1))
        self.mean.value = m * self.mean.value + (1.0 - m) * mean
        self.var.value = m * self.var.value + (1.0 - m) * var


class SqueezeExcite(nnx.Module):
    """Squeeze-excite: global average pool (float32), 1x1 conv + activation, 1x1 conv + gate,
    then scale the input channels. Both 1x1 convs have a bias, as in the references."""

    def __init__(self, channels: int, se_channels: int, *, activation: str, gate: str,
                 kernel_init: Callable, dtype=jnp.float32, rngs: nnx.Rngs):
        self.reduce = Conv2d(channels, se_channels, 1, use_bias=True, kernel_init=kernel_init,
                             dtype=dtype, rngs=rngs)
        self.expand = Conv2d(se_channels, channels, 1, use_bias=True, kernel_init=kernel_init,
                             dtype=dtype, rngs=rngs)
        self.activation = activation
        self.gate = gate
        self.dtype = dtype

    def __call__(self, x):
        s = x.astype(wide(x.dtype)).mean(axis=(1, 2), keepdims=True).astype(self.dtype)
        s = ACTIVATIONS[self.activation](self.reduce(s))
        s = GATES[self.gate](self.expand(s))
        return x * s


class LayerScale(nnx.Module):
    """Per-channel learned scale of a residual branch (CaiT; MobileNetV4 `MNV4LayerScale` in
    TF-Vision `official/vision/modeling/layers/nn_blocks.py`, timm `LayerScale2d`), starting at
    `init_value`."""

    PARAM_KINDS = {"gamma": "layer_scale"}

    def __init__(self, channels: int, init_value: float):
        self.gamma = nnx.Param(jnp.full((channels,), init_value, jnp.float32))

    def __call__(self, x):
        return _record(self, x * self.gamma.value.astype(x.dtype))


class MatMul(nnx.Module):
    """A product of two activations (attention logits, attention-weighted values) as
    `jnp.einsum(spec, a, b)`, accumulated in float32. A layer of its own so that counting sees
    its multiply-accumulates: every output element costs the product of the summed axes."""

    def __init__(self, spec: str):
        self.spec = spec

    def __call__(self, a, b):
        inputs, output = self.spec.split("->")
        sizes = {}
        for letters, operand in zip(inputs.split(","), (a, b)):
            sizes.update(zip(letters, operand.shape))
        summed = math.prod(sizes[c] for c in sizes if c not in output)
        y = jnp.einsum(self.spec, a, b, preferred_element_type=jnp.float32)
        return _record(self, y, math.prod(y.shape[1:]) * summed)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round `value` to the nearest multiple of `divisor` (at least `min_value`), never going
    down by more than 10%: the TF-slim / Keras `_make_divisible` / `_depth` rule."""
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return int(new_value)


def round_channels(channels: float, multiplier: float = 1.0, divisor: int = 8) -> int:
    """Width scaling: `channels * multiplier` rounded with `make_divisible`."""
    return make_divisible(channels * multiplier, divisor)


def round_repeats(repeats: int, multiplier: float = 1.0) -> int:
    """Depth scaling: `ceil(repeats * multiplier)` (EfficientNet's rule)."""
    return int(math.ceil(repeats * multiplier))

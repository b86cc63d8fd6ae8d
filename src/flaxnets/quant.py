"""Quantization-aware training (QAT) with Qwix's ODML provider, for LiteRT's full-integer int8.

`quant.mode: qat` wraps the network with `qwix.OdmlQatProvider`: in every forward pass the
convolution and dense weights are fake-quantized to int8 (symmetric, one scale per output channel)
and every activation tensor to int8 (one scale and zero point per tensor) where the int8 LiteRT
model will hold an int8 tensor; gradients pass straight through. Qwix's provider is tensor-centric
(LiteRT's quantization spec): it quantizes an op's output where the converter cannot fuse the
next op into it, so a BatchNorm after a convolution, a bias or ReLU are not quantized apart.

Each activation range is learned as the mean of the per-batch (min, max) over the training steps
(`qwix.QuantStat` variables: a count and the sums, in the model's `other` state, so checkpoints,
resume and gradient accumulation carry them as they carry BatchNorm statistics; the EMA averages
only the weights). The network updates the statistics in train mode and only reads them in eval
mode (`model.train()` / `model.eval()` switch Qwix's `disable_quant_stats_update`).

Two flaxnets layers are taught to Qwix (its documented way for ops it does not know: an entry in
the provider's op table, see qwix/_src/providers/odml_ops.py `get_all_ops`): our `BatchNorm`
takes Qwix's BatchNorm rule (folded into the convolution before it, as the LiteRT converter does),
`hard_swish` is quantized as the int8 export computes it, (x / 6) * relu6(x + 3) with int8
x, x / 6, relu6(x + 3) and the product (`flaxnets.models.layers.hard_swish_split`), and
`hard_sigmoid` as relu6(x + 3) fused into the convolution before it, then an int8 MUL by 1/6;
their constants are int8 tensors, so no float op is left between them.

For export, `conversion_model` rebuilds the float network with `qwix.OdmlConversionProvider`,
which traces every fake quantization as a `quant.fake_quant` composite carrying the learned scale
and zero point; the LiteRT converter's strict QDQ mode turns them into an int8 model without a
calibration set (`flaxnets.export.tflite`). Qwix is pinned (0.1.8): the op table and the op
classes used here are internal to it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import qwix
from flax import nnx
from qwix._src import aux_data
from qwix._src.providers import odml_ops

from flaxnets.config import QuantConfig
from flaxnets.models.layers import Dense, conv_implementation

_DTYPES = {"int8": jnp.int8}


class _Constants(odml_ops.QuantizedOp):
    """An op handler whose float constants are int8 tensors too (exact: each is the top of its
    fixed [0, c] range): a float constant would leave its MUL or ADD in float, between a
    DEQUANTIZE and a QUANTIZE."""

    input_idx = [0]

    def _constant(self, x, value: float, rule, name: str):
        c = jnp.full((1,) * x.ndim, value, x.dtype)
        aux_data.set(c, odml_ops.AuxDataKey.FIXED_RANGE, (0.0, value))
        return self._maybe_fake_quant(c, rule, name)


class _HardSigmoid(_Constants):
    """hard-sigmoid as the int8 export computes it: the ADD of 3 and the RELU6 fuse into the
    convolution before (Qwix's fusion rule, as the converter folds them), then an int8 MUL by 1/6."""

    def __call__(self, x):
        if not aux_data.get(x, odml_ops.AuxDataKey.IS_ACTIVATION, False):
            return self._call_original_op(x)
        rule, op_id = self._get_rule_and_op_id_fn("hard_sigmoid")
        gate = self._maybe_fake_quant(jax.nn.relu6(x + 3.0), rule, op_id + "_relu6")
        return self._fake_quant_output(gate * self._constant(x, 1.0 / 6.0, rule, op_id + "_one_sixth"), rule)


class _HardSwish(_Constants):
    """hard-swish as the int8 LiteRT export computes it: MUL by 1/6, ADD 3 with a fused RELU6, MUL,
    each input and output an int8 tensor (the input quantized here, the output by the next op)."""

    def __call__(self, x):
        if not aux_data.get(x, odml_ops.AuxDataKey.IS_ACTIVATION, False):
            return self._call_original_op(x)
        rule, op_id = self._get_rule_and_op_id_fn("hard_swish")
        x = self._maybe_fake_quant(x, rule, op_id)
        sixth = x * self._constant(x, 1.0 / 6.0, rule, op_id + "_one_sixth")
        sixth = self._maybe_fake_quant(sixth, rule, op_id + "_sixth")
        gate = jax.nn.relu6(x + self._constant(x, 3.0, rule, op_id + "_three"))
        gate = self._maybe_fake_quant(gate, rule, op_id + "_relu6")
        return self._fake_quant_output(sixth * gate, rule)


class _Sigmoid(odml_ops.QuantizedOp):
    """The squeeze-excite sigmoid gate: an int8 LOGISTIC, whose output LiteRT fixes at scale
    1/256 and zero point -128 (the range Qwix gives its softmax and silu's sigmoid)."""

    input_idx = [0]
    fixed_range_for_output = odml_ops.Softmax.fixed_range_for_output


def _rules(quant: QuantConfig) -> list[qwix.QuantizationRule]:
    return [qwix.QuantizationRule(module_path=".*", weight_qtype=_DTYPES[quant.weight_dtype],
                                  act_qtype=_DTYPES[quant.activation_dtype],
                                  act_calibration_method=quant.activation_calibration)]


def _with_flaxnets_ops(provider):
    # Read when the provider builds its interceptors (at each quantized call), so set before use.
    provider._ops["flaxnets.models.layers.BatchNorm.__call__"] = odml_ops.BatchNorm
    provider._ops["flaxnets.models.layers.hard_swish"] = _HardSwish
    provider._ops["flaxnets.models.layers.hard_sigmoid"] = _HardSigmoid
    # swish as Qwix's silu: int8 input, int8 LOGISTIC, int8 MUL (EfficientNet-B series).
    provider._ops["flaxnets.models.layers.swish"] = odml_ops.Silu
    provider._ops["flaxnets.models.layers.sigmoid"] = _Sigmoid
    # Dropout and stochastic depth (train mode only): transparent, as Qwix's Linen Dropout rule.
    provider._ops["flax.nnx.Dropout.__call__"] = odml_ops.Dropout
    return provider


def _flaxnets_quantized(cls):
    """`cls` (Qwix's quantized class) whose train()/eval() also start/stop the range updates and
    whose convolutions are always traced as `lax` convolutions: Qwix quantizes a convolution's
    weights per output channel only there (as LiteRT's CONV_2D / DEPTHWISE_CONV_2D hold them),
    and its range names follow the ops, so a run must trace the same ops on every backend."""

    def train(self, **attributes):
        return cls.train(self, disable_quant_stats_update=False, **attributes)

    def eval(self, **attributes):
        return cls.eval(self, disable_quant_stats_update=True, **attributes)

    def __call__(self, *args, **kwargs):
        with conv_implementation("lax"):
            return cls.__call__(self, *args, **kwargs)

    return type(cls.__name__, (cls,), {"train": train, "eval": eval, "__call__": __call__,
                                       "__doc__": cls.__doc__})


def _example_input(image_size: int):
    return jnp.zeros((1, image_size, image_size, 3), jnp.float32)


def _quantize(model: nnx.Module, provider, image_size: int) -> nnx.Module:
    x = _example_input(image_size)
    model.eval()
    # Qwix runs the model once to create its variables; it does so op by op (minutes for a
    # MobileNet on a CPU), so skip that and make the one call compiled.
    qmodel = qwix.quantize_model(model, provider, x, skip_nnx_init=True)
    qmodel.__class__ = _flaxnets_quantized(type(qmodel))
    qmodel.eval()
    nnx.jit(lambda m, x: m(x))(qmodel, x)
    return qmodel


def quantize_for_training(model: nnx.Module, quant: QuantConfig, *, image_size: int) -> nnx.Module:
    """`model` (a flaxnets network; its weights kept) with int8 fake quantization as `quant` says,
    in train mode, its activation ranges not yet learned (count 0: the first training step uses
    its own batch's ranges)."""
    provider = _with_flaxnets_ops(qwix.OdmlQatProvider(
        _rules(quant), disable_per_channel_weights=not quant.per_channel_weights))
    qmodel = _quantize(model, provider, image_size)
    qmodel.train()
    return qmodel


def is_quantized(model: nnx.Module) -> bool:
    """True when `model` carries Qwix quantization statistics (a `quant.mode: qat` network)."""
    return bool(jax.tree.leaves(nnx.state(model, qwix.QuantStat)))


def float_model(model: nnx.Module) -> nnx.Module:
    """The float network of a QAT `model` (same weights, no fake quantization), in eval mode;
    `model` itself when it is not quantized."""
    if not is_quantized(model):
        return model
    plain = nnx.clone(model)
    for _, module in plain.iter_modules():
        for name, value in list(vars(module).items()):
            if isinstance(value, qwix.QuantStat):
                delattr(module, name)
    plain.__class__ = type(model)._unquantized_type
    plain.eval()
    return plain


def untrained_ranges(model: nnx.Module) -> list[str]:
    """The activations of a QAT `model` whose range was never learned (no training step), as
    'module/path/name'."""
    return ["/".join(map(str, path)) for path, stat in nnx.to_flat_state(nnx.state(model, qwix.QuantStat))
            if int(stat.value["count"]) == 0]


def conversion_model(model: nnx.Module, quant: QuantConfig, *, image_size: int) -> nnx.Module:
    """The float network of a QAT `model` in eval mode, traced with each fake quantization as a
    `quant.fake_quant` composite holding the int8 scale and zero point learned in training (the
    weights' from the weights), for the LiteRT converter's QDQ conversion."""
    plain = _fold_dense_batchnorm(float_model(model))
    params = nnx.to_pure_dict(nnx.state(plain, nnx.Param))
    ranges = nnx.to_pure_dict(nnx.state(model, qwix.QuantStat))
    provider = _with_flaxnets_ops(qwix.OdmlConversionProvider(
        _rules(quant), params, ranges, disable_per_channel_weights=not quant.per_channel_weights))
    return _quantize(plain, provider, image_size)


def _fold_dense_batchnorm(model: nnx.Module) -> nnx.Module:
    """`model` (a float network in eval mode, changed in place) with the BatchNorm after its
    pre-logits dense layer (MobileNet v4) folded into that layer's kernel and bias.

    Qwix's QAT fuses that BatchNorm into the dense layer, as it does after a convolution, and
    learns one range for the result; the LiteRT converter folds a BatchNorm into a convolution
    but leaves one after FULLY_CONNECTED as float SUB, MUL, MUL and ADD between a DEQUANTIZE and
    a QUANTIZE. Folded here, the dense layer is the one int8 FULLY_CONNECTED the QAT network
    computed: with per-channel weights the folded kernel quantizes to the same integers (each
    output channel's scale is multiplied by that channel's |BatchNorm scale|)."""
    for _, module in model.iter_modules():
        dense, bn = getattr(module, "pre_logits", None), getattr(module, "pre_logits_bn", None)
        if not isinstance(dense, Dense) or bn is None:
            continue
        scale = bn.scale.value * jax.lax.rsqrt(bn.var.value + bn.epsilon)
        bias = dense.bias.value if dense.bias is not None else jnp.zeros_like(scale)
        dense.kernel.value = dense.kernel.value * scale
        dense.bias = nnx.Param((bias - bn.mean.value) * scale + bn.bias.value)
        dense.use_bias = True
        module.pre_logits_bn = nnx.data(None)
    return model

"""ONNX export: walk the model's traced forward pass (its jaxpr, eval mode, float32) and write
the same layers as ONNX nodes with the `onnx` package.

- Activations are kept NCHW inside the graph (ONNX Conv's layout); the graph input is NHWC,
  float32 and already normalised, exactly like `model(x)`, and the batch dimension is dynamic
  (traced with a symbolic batch size).
- Weights are constants of the trace; arithmetic on constants alone is evaluated while walking,
  so BatchNorm's eval-mode affine becomes per-channel scale/shift constants that are folded
  into the preceding Conv (or Gemm) weights and bias.
- Padding is written explicitly from the traced convolution: TF "SAME" gives asymmetric pads
  (extra pixel bottom/right), symmetric padding gives equal pads.
- Attention: a product of two activations (`dot_general` without a constant operand) becomes
  an ONNX Einsum; the reshapes between feature maps and [batch, positions, heads, dims]
  tensors become Transpose + Reshape; softmax is exported from its primitives.
- Named activation functions become single ONNX ops: relu -> Relu, relu6 -> Clip(0, 6),
  hard_sigmoid -> HardSigmoid, hard_swish / hard_silu -> HardSwish, silu / swish ->
  x * Sigmoid(x), logistic -> Sigmoid; others are exported from their primitives.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from flaxnets.errors import FlaxnetsError

OPSET = 17


@dataclasses.dataclass
class _Act:
    """An activation in the graph: ONNX value name, logical (JAX) shape. A rank-4 image is NCHW
    in the graph; `image` False marks a rank-4 value that is not a feature map (attention's
    [batch, positions, heads, dims]), kept in the JAX layout."""

    name: str
    shape: tuple
    image: bool = True


def _is_image(x) -> bool:
    return len(x.shape) == 4 and getattr(x, "image", True)


@dataclasses.dataclass
class _Linear:
    """A Conv/Gemm output with a pending per-channel affine y * scale + shift, folded into the
    node's weights when the value is first used by anything but another affine step."""

    node: object
    weight: np.ndarray
    bias: np.ndarray
    channel_axis: int  # of the weight: 0 for Conv OIHW, 1 for Gemm (in, out)
    shape: tuple
    scale: np.ndarray
    shift: np.ndarray


class _Builder:
    def __init__(self):
        self.nodes, self.initializers, self.counter = [], [], 0

    def fresh(self, hint: str) -> str:
        self.counter += 1
        return f"{hint}_{self.counter}"

    def const(self, array, hint: str = "c") -> str:
        from onnx import numpy_helper

        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], hint: str | None = None, **attrs):
        from onnx import helper

        out = self.fresh(hint or op.lower())
        node = helper.make_node(op, inputs, [out], name=out, **attrs)
        self.nodes.append(node)
        return out, node


def _nchw_const(value: np.ndarray, rank4: bool) -> np.ndarray:
    """A constant operand in the layout of a rank-4 NCHW partner (numpy broadcasting rules)."""
    value = np.asarray(value, np.float32)
    if not rank4 or value.ndim == 0:
        return value
    value = value.reshape((1,) * (4 - value.ndim) + value.shape)
    return value.transpose(0, 3, 1, 2)


def _channel_vector(value: np.ndarray, channels: int, channel_last_rank: int) -> np.ndarray | None:
    """`value` as a per-channel vector if it broadcasts only along the channel (last) axis."""
    value = np.asarray(value, np.float32)
    if value.ndim == 0:
        return np.full((channels,), float(value), np.float32)
    if value.ndim > channel_last_rank or any(d != 1 for d in value.shape[:-1]):
        return None
    if value.shape[-1] == channels:
        return value.reshape(channels)
    if value.shape[-1] == 1:
        return np.full((channels,), float(value.reshape(())), np.float32)
    return None


_NAMED = {"relu", "relu6", "hard_sigmoid", "hard_swish", "hard_silu", "silu", "swish", "sigmoid"}


class _Converter:
    def __init__(self):
        self.b = _Builder()

    # -- values -------------------------------------------------------------------------------
    def materialize(self, value):
        """The ONNX value name of an activation, folding a pending affine into its node."""
        if isinstance(value, _Act):
            return value
        if isinstance(value, _Linear):
            from onnx import numpy_helper

            shape = [1] * value.weight.ndim
            shape[value.channel_axis] = -1
            weight = value.weight * value.scale.reshape(shape)
            bias = value.bias * value.scale + value.shift
            node = value.node
            w_name, b_name = node.input[1], node.input[2]
            for i, init in enumerate(self.b.initializers):
                if init.name == w_name:
                    self.b.initializers[i] = numpy_helper.from_array(weight.astype(np.float32), w_name)
                elif init.name == b_name:
                    self.b.initializers[i] = numpy_helper.from_array(bias.astype(np.float32), b_name)
            act = _Act(node.output[0], value.shape)
            return act
        raise TypeError(value)

    # -- the walk -----------------------------------------------------------------------------
    def run(self, jaxpr, consts, inputs):
        env = {}
        uses: dict = {}
        for eqn in jaxpr.eqns:
            for v in eqn.invars:
                if not _is_literal(v):
                    uses[v] = uses.get(v, 0) + 1
        for v in jaxpr.outvars:
            if not _is_literal(v):
                uses[v] = uses.get(v, 0) + 1

        def read(v):
            return np.asarray(v.val) if _is_literal(v) else env[v]

        for var, val in zip(jaxpr.constvars, consts):
            env[var] = np.asarray(val)
        for var, val in zip(jaxpr.invars, inputs):
            env[var] = val
        for eqn in jaxpr.eqns:
            args = [read(v) for v in eqn.invars]
            if all(isinstance(a, np.ndarray) for a in args):
                outs = _evaluate(eqn, args)
            else:
                single_use = len(eqn.invars) > 0 and not _is_literal(eqn.invars[0]) and uses.get(eqn.invars[0]) == 1
                outs = self.convert(eqn, args, single_use)
            for var, out in zip(eqn.outvars, outs):
                env[var] = out
        return [read(v) for v in jaxpr.outvars]

    def convert(self, eqn, args, single_use: bool):
        name = eqn.primitive.name
        shape = tuple(eqn.outvars[0].aval.shape)
        if name in ("pjit", "jit", "custom_jvp_call", "custom_vjp_call", "closed_call", "remat"):
            fn_name = eqn.params.get("name")
            # A pending Conv affine must not be folded inside a sub-call and used raw outside.
            args = [a if isinstance(a, np.ndarray) else self.materialize(a) for a in args]
            if fn_name in _NAMED:
                return [self.named(fn_name, self.materialize(args[0]), shape)]
            sub = eqn.params.get("jaxpr") or eqn.params.get("call_jaxpr") or eqn.params.get("fun_jaxpr")
            return self.run(sub.jaxpr, sub.consts, args)
        if name in ("add", "sub", "mul", "div", "max", "min"):
            return [self.binary(name, args, shape, single_use)]
        if name == "dot_general" and not isinstance(args[1], np.ndarray):
            return [self.einsum(eqn, self.materialize(args[0]), self.materialize(args[1]), shape)]
        x = self.materialize(args[0])
        if name == "conv_general_dilated":
            return [self.conv(eqn, x, args[1], shape)]
        if name == "dot_general":
            return [self.dense(eqn, x, args[1], shape)]
        if name == "logistic":
            return [_Act(self.b.node("Sigmoid", [x.name])[0], shape, _is_image(x))]
        if name == "erfc":
            # The exact GELU (MobileNetV4 Hybrid-L) is x * erfc(-x / sqrt(2)) / 2 in JAX; ONNX has
            # no Erfc: 1 + Erf(-x), erf being odd (an Add, so a Sub still means unfolded BatchNorm).
            erf = self.b.node("Erf", [self.b.node("Neg", [x.name])[0]])[0]
            out = self.b.node("Add", [self.b.const(np.array(1.0, np.float32), "one"), erf])[0]
            return [_Act(out, shape, _is_image(x))]
        if name in ("tanh", "exp", "neg", "sqrt", "erf"):
            op = {"tanh": "Tanh", "exp": "Exp", "neg": "Neg", "sqrt": "Sqrt", "erf": "Erf"}[name]
            return [_Act(self.b.node(op, [x.name])[0], shape, _is_image(x))]
        if name == "convert_element_type":
            if np.dtype(eqn.params["new_dtype"]) != np.float32:
                raise FlaxnetsError("ONNX export needs a float32 model (create it with dtype=float32)")
            return [x]
        if name in ("copy", "copy_p", "optimization_barrier", "stop_gradient"):
            return [x]
        if name == "transpose":
            if _is_image(x):
                raise FlaxnetsError("ONNX export: a transpose of a feature map is not supported")
            out = self.b.node("Transpose", [x.name], perm=[int(p) for p in eqn.params["permutation"]])[0]
            return [_Act(out, shape, image=False)]
        if name in ("reduce_sum", "reduce_max"):
            axes = list(eqn.params["axes"])
            if _is_image(x):
                axes = [{0: 0, 1: 2, 2: 3, 3: 1}[a] for a in axes]
                if 1 in axes:
                    raise FlaxnetsError("ONNX export: a reduction over channels is not supported")
            op = "ReduceSum" if name == "reduce_sum" else "ReduceMax"
            if op == "ReduceMax":  # opset 17 ReduceMax takes its axes as an attribute
                out = self.b.node(op, [x.name], axes=axes, keepdims=0)[0]
            else:
                out = self.b.node(op, [x.name, self.b.const(np.array(axes, np.int64), "axes")], keepdims=0)[0]
            return [_Act(out, shape, image=_is_image(x) and len(shape) == 4)]
        if name == "broadcast_in_dim":
            dims = tuple(eqn.params["broadcast_dimensions"])
            if len(shape) == len(x.shape):
                return [_Act(x.name, x.shape, _is_image(x))]  # ONNX elementwise ops broadcast by themselves
            if len(x.shape) == 2 and len(shape) == 4 and dims == (0, 3) and shape[1:3] == (1, 1):
                out = self.b.node("Unsqueeze", [x.name, self.b.const(np.array([2, 3], np.int64), "axes")])[0]
                return [_Act(out, shape)]
            if not _is_image(x) and len(x.shape) > 2 and list(dims) == sorted(dims):
                # New unit axes (keepdims after a reduction); sizes broadcast in the next op.
                missing = [a for a in range(len(shape)) if a not in dims]
                out = self.b.node("Unsqueeze", [x.name, self.b.const(np.array(missing, np.int64), "axes")])[0]
                return [_Act(out, tuple(shape[a] if a in dims else 1 for a in range(len(shape))), image=False)]
            raise FlaxnetsError(f"ONNX export: unsupported broadcast {x.shape} -> {shape}")
        if name in ("reshape", "squeeze", "expand_dims"):
            return [self.reshape(x, shape)]
        raise FlaxnetsError(f"ONNX export: unsupported operation {name!r}")

    def named(self, fn: str, x: _Act, shape) -> _Act:
        b = self.b
        if fn == "relu":
            return _Act(b.node("Relu", [x.name])[0], shape)
        if fn == "relu6":
            lo, hi = b.const(np.float32(0.0), "zero"), b.const(np.float32(6.0), "six")
            return _Act(b.node("Clip", [x.name, lo, hi])[0], shape)
        if fn == "hard_sigmoid":
            return _Act(b.node("HardSigmoid", [x.name], alpha=1.0 / 6.0, beta=0.5)[0], shape)
        if fn in ("hard_swish", "hard_silu"):
            return _Act(b.node("HardSwish", [x.name])[0], shape)
        if fn == "sigmoid":
            return _Act(b.node("Sigmoid", [x.name])[0], shape)
        gate = b.node("Sigmoid", [x.name])[0]  # silu / swish
        return _Act(b.node("Mul", [x.name, gate], hint="swish")[0], shape)

    def binary(self, name, args, shape, single_use):
        lhs, rhs = args
        # Fold a per-channel constant into a pending Conv/Gemm affine (BatchNorm, dense bias).
        if isinstance(lhs, _Linear) and isinstance(rhs, np.ndarray) and single_use and name in ("add", "sub", "mul", "div"):
            vec = _channel_vector(rhs, lhs.scale.shape[0], len(lhs.shape))
            if vec is not None:
                scale, shift = lhs.scale, lhs.shift
                if name == "add":
                    shift = shift + vec
                elif name == "sub":
                    shift = shift - vec
                elif name == "mul":
                    scale, shift = scale * vec, shift * vec
                else:
                    scale, shift = scale / vec, shift / vec
                return dataclasses.replace(lhs, scale=scale, shift=shift, shape=shape)
        if isinstance(lhs, np.ndarray) and name in ("add", "mul", "max", "min"):
            lhs, rhs = rhs, lhs  # commutative: keep the activation first
        if isinstance(lhs, np.ndarray):
            rhs_act = self.materialize(rhs)
            lhs_name = self.b.const(_nchw_const(lhs, _is_image(rhs_act)), "k")
            op = {"sub": "Sub", "div": "Div"}[name]
            return _Act(self.b.node(op, [lhs_name, rhs_act.name])[0], shape, _is_image(rhs_act))
        lhs = self.materialize(lhs)
        if isinstance(rhs, np.ndarray):
            if name == "max" and rhs.ndim == 0 and float(rhs) == 0.0:
                return _Act(self.b.node("Relu", [lhs.name])[0], shape, _is_image(lhs))
            rhs_name = self.b.const(_nchw_const(rhs, _is_image(lhs)), "k")
        else:
            rhs_act = self.materialize(rhs)
            if len(rhs_act.shape) != len(lhs.shape) and 4 in (len(rhs_act.shape), len(lhs.shape)):
                raise FlaxnetsError(f"ONNX export: unsupported broadcast between {lhs.shape} and {rhs_act.shape}")
            rhs_name = rhs_act.name
        op = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max", "min": "Min"}[name]
        return _Act(self.b.node(op, [lhs.name, rhs_name])[0], shape, _is_image(lhs))

    def conv(self, eqn, x: _Act, kernel, shape):
        p = eqn.params
        dn = p["dimension_numbers"]
        if not isinstance(kernel, np.ndarray):
            raise FlaxnetsError("ONNX export: convolution with a computed kernel")
        if tuple(dn.lhs_spec) != (0, 3, 1, 2) or tuple(dn.out_spec) != (0, 3, 1, 2):
            raise FlaxnetsError(f"ONNX export: convolution layout {dn} is not NHWC")
        weight = np.transpose(kernel, dn.rhs_spec).astype(np.float32)  # -> OIHW
        (top, bottom), (left, right) = p["padding"]
        out_channels = weight.shape[0]
        bias = np.zeros((out_channels,), np.float32)
        w_name, b_name = self.b.const(weight, "W"), self.b.const(bias, "B")
        _, node = self.b.node(
            "Conv", [x.name, w_name, b_name], hint="conv",
            kernel_shape=list(weight.shape[2:]), strides=list(p["window_strides"]),
            pads=[int(top), int(left), int(bottom), int(right)], dilations=list(p["rhs_dilation"]),
            group=int(p["feature_group_count"]),
        )
        ones = np.ones((out_channels,), np.float32)
        return _Linear(node, weight, bias, 0, shape, ones, np.zeros_like(ones))

    def dense(self, eqn, x: _Act, kernel, shape):
        (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
        if not isinstance(kernel, np.ndarray) or len(x.shape) != 2 or tuple(lc) != (1,) or tuple(rc) != (0,) or lb or rb:
            raise FlaxnetsError("ONNX export: only (batch, features) x constant (features, out) products")
        weight = kernel.astype(np.float32)
        bias = np.zeros((weight.shape[1],), np.float32)
        _, node = self.b.node("Gemm", [x.name, self.b.const(weight, "W"), self.b.const(bias, "B")], hint="gemm")
        ones = np.ones((weight.shape[1],), np.float32)
        return _Linear(node, weight, bias, 1, shape, ones, np.zeros_like(ones))

    def einsum(self, eqn, lhs: _Act, rhs: _Act, shape) -> _Act:
        """A product of two (non-image) activations, as dot_general defines its output order:
        batch axes, then the free axes of lhs, then those of rhs."""
        if _is_image(lhs) or _is_image(rhs):
            raise FlaxnetsError("ONNX export: a product of feature maps is not supported")
        (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
        letters = iter("abcdefghijklmnopqrstuvwxyz")
        left = [next(letters) for _ in lhs.shape]
        right = [next(letters) for _ in rhs.shape]
        for i, j in zip(list(lb) + list(lc), list(rb) + list(rc)):
            right[j] = left[i]
        out = ([left[i] for i in lb] + [c for i, c in enumerate(left) if i not in lb and i not in lc]
               + [c for j, c in enumerate(right) if j not in rb and j not in rc])
        equation = f"{''.join(left)},{''.join(right)}->{''.join(out)}"
        return _Act(self.b.node("Einsum", [lhs.name, rhs.name], equation=equation)[0], shape, image=False)

    def reshape(self, x: _Act, shape) -> _Act:
        name = x.name
        if _is_image(x) and tuple(x.shape[1:3]) != (1, 1):
            name = self.b.node("Transpose", [name], perm=[0, 2, 3, 1])[0]  # back to NHWC first
        target = list(shape)
        # A rank-4 result is a feature map when it comes from a non-image (attention heads
        # merged back into channels), or when it has a 1x1 map; a feature map reshaped to
        # rank 4 otherwise is attention's [batch, positions, heads, dims].
        to_image = len(target) == 4 and (not _is_image(x) or tuple(shape[1:3]) == (1, 1))
        if to_image and tuple(shape[1:3]) == (1, 1):
            target = [target[0], target[3], target[1], target[2]]
        if not isinstance(target[0], int):
            target[0] = 0  # the dynamic batch: ONNX Reshape's 0 copies the input's dimension
        if any(not isinstance(d, int) for d in target[1:]):
            raise FlaxnetsError(f"ONNX export: reshape to {shape} with a dynamic non-batch size")
        out = self.b.node("Reshape", [name, self.b.const(np.array(target, np.int64), "shape")])[0]
        if to_image and tuple(shape[1:3]) != (1, 1):  # NHWC -> the graph's NCHW
            out = self.b.node("Transpose", [out], perm=[0, 3, 1, 2])[0]
        return _Act(out, tuple(shape), image=len(shape) == 4 and to_image)


def _is_literal(v) -> bool:
    from jax.extend.core import Literal

    return isinstance(v, Literal)


def _evaluate(eqn, args):
    """Evaluate an equation whose inputs are all constants (weights, BN statistics)."""
    out = eqn.primitive.bind(*args, **eqn.primitive.get_bind_params(eqn.params))
    outs = out if eqn.primitive.multiple_results else [out]
    return [np.asarray(o) for o in outs]


def export_onnx(model, path, *, resolution: int, opset: int = OPSET) -> pathlib.Path:
    """Write `model` (eval mode) as an ONNX graph taking a normalised float32 NHWC batch
    [batch, resolution, resolution, 3] (batch dynamic) and returning float32 logits."""
    import jax
    import jax.numpy as jnp
    import onnx
    from onnx import TensorProto, helper

    model.eval()
    (batch,) = jax.export.symbolic_shape("batch")
    spec = jax.ShapeDtypeStruct((batch, resolution, resolution, 3), jnp.float32)
    from flaxnets.models.layers import conv_implementation

    # Every convolution must reach the graph as one Conv (not as shifted sums or matmuls).
    with conv_implementation("lax"):
        closed = jax.make_jaxpr(lambda x: model(x))(spec)
    converter = _Converter()
    nchw = converter.b.node("Transpose", ["input"], hint="nchw", perm=[0, 3, 1, 2])[0]
    (logits,) = converter.run(closed.jaxpr, closed.consts, [_Act(nchw, (batch, resolution, resolution, 3))])
    if isinstance(logits, np.ndarray):
        raise FlaxnetsError("ONNX export: the model output does not depend on its input")
    logits = converter.materialize(logits)
    if len(logits.shape) != 2:
        raise FlaxnetsError(f"ONNX export: expected logits of rank 2, got shape {logits.shape}")
    converter.b.nodes.append(helper.make_node("Identity", [logits.name], ["logits"], name="logits"))
    graph = helper.make_graph(
        converter.b.nodes, "flaxnets",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", resolution, resolution, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", int(logits.shape[1])])],
        converter.b.initializers,
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="flaxnets")
    onnx.checker.check_model(onnx_model)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(onnx_model, str(path))
    return path


def relative_difference(model, path, resolution: int, batch: int = 2, seed: int = 0) -> float:
    """max |onnxruntime - JAX| / max |JAX| over the logits of a random normal batch."""
    import jax
    import jax.numpy as jnp
    from flax import nnx
    import onnxruntime

    x = np.random.default_rng(seed).standard_normal((batch, resolution, resolution, 3)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"input": x})[0]
    model.eval()
    graphdef, state = nnx.split(model)
    want = np.asarray(jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, jnp.asarray(x)))
    return float(np.abs(got - want).max() / np.abs(want).max())

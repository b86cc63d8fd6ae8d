"""Shared pieces of the weight importers: our model's layers in forward order, the checkpoint
origin (padding, normalisation, BatchNorm constants) and the ImageNet class names.

Importers match a checkpoint to a model layer by layer in *forward order* rather than by our
attribute names: each checkpoint layout is put in its network's forward order from its own key
names, our model's order is recorded by running it once, and each pair is checked for kind and
shape. A structural difference therefore surfaces as a named shape or kind mismatch, and renaming
an attribute in `flaxnets.models` cannot silently break an importer.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from flaxnets.errors import FlaxnetsError
from flaxnets.imagenet import imagenet_classes
from flaxnets.models import param_kinds


@dataclasses.dataclass
class WeightsInfo:
    """What a checkpoint says about how its network must be built and fed.

    `padding`, `bn_epsilon` and `bn_momentum` go to `create_model` (see `model_overrides`);
    `mean`/`std` (0-255 scale) replace the model's default normalisation when not None.
    After `load_weights`, `loaded` counts the arrays written and `skipped` names the checkpoint
    tensors left out (classifier with skip_classifier, unexpected ones with strict=False).
    """

    layout: str  # "timm" | "lukemelas" | "keras"
    origin: str  # "tf" (trained in TensorFlow, TF "SAME" padding) | "torch"
    padding: str  # "same" | "symmetric"
    bn_epsilon: float
    bn_momentum: float  # flax convention: running = momentum * running + (1 - momentum) * batch
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    architecture: str | None = None  # the source's model name where the file tells it
    loaded: int = 0
    skipped: list[str] = dataclasses.field(default_factory=list)
    missing: list[str] = dataclasses.field(default_factory=list)

    def model_overrides(self) -> dict[str, Any]:
        """Keyword arguments for `create_model` that make our network match the checkpoint."""
        return {"padding": self.padding, "bn_epsilon": self.bn_epsilon, "bn_momentum": self.bn_momentum}


def origin_info(layout: str, origin: str, **kwargs) -> WeightsInfo:
    """The padding and BatchNorm constants of a checkpoint trained in `origin` ("tf"/"torch")."""
    if origin == "tf":
        # TF: SAME padding, BatchNorm eps 1e-3, decay 0.99.
        return WeightsInfo(layout, origin, "same", 1e-3, 0.99, **kwargs)
    if origin == "torch":
        # PyTorch defaults: symmetric padding k//2, eps 1e-5, momentum 0.1 (= flax 0.9).
        return WeightsInfo(layout, origin, "symmetric", 1e-5, 0.9, **kwargs)
    raise FlaxnetsError(f"unknown weights origin {origin!r}; expected 'tf' or 'torch'")


@dataclasses.dataclass
class Layer:
    """One of our layers that owns weights: `kind` is conv | depthwise | dense | bn | scale
    (layer scale); `arrays` maps a role (kernel, bias, scale, mean, var, gamma) to its
    nnx.Variable; `path` is the module's path in the model graph."""

    path: tuple
    kind: str
    arrays: dict[str, Any]

    @property
    def name(self) -> str:
        return ".".join(str(p) for p in self.path)


_KIND_OF_KERNEL = {"conv_kernel": "conv", "depthwise_kernel": "depthwise", "dense_kernel": "dense"}


def model_layers(model, resolution: int = 64) -> list[Layer]:
    """Our model's weight-owning layers in the order the forward pass calls them.

    The order is recorded by tracing one forward pass (no compute: `jax.eval_shape`) with the
    layer classes' `__call__` wrapped; kinds come from `flaxnets.models.param_kinds`.
    """
    kinds = param_kinds(model)
    graphdef, state = nnx.split(model)
    owners: dict[int, tuple] = {}
    order: list[tuple] = []

    def recording(call):
        def wrapped(self, *args, **kwargs):
            path = owners.get(id(self))
            if path is not None and path not in order:
                order.append(path)
            return call(self, *args, **kwargs)

        return wrapped

    def forward(state, x):
        # A merged copy, so that a model whose arrays are still abstract (nnx.eval_shape) works.
        copy = nnx.merge(graphdef, state)
        copy.eval()
        for path, node in nnx.iter_graph(copy):
            if isinstance(node, nnx.Module) and any(isinstance(v, nnx.Variable) for v in vars(node).values()):
                owners[id(node)] = tuple(path)
        return copy(x)

    classes = {type(n) for _, n in nnx.iter_graph(model) if isinstance(n, nnx.Module)
               and any(isinstance(v, nnx.Variable) for v in vars(n).values())}
    originals = {cls: cls.__call__ for cls in classes}
    try:
        for cls in classes:
            cls.__call__ = recording(originals[cls])
        jax.eval_shape(forward, state, jax.ShapeDtypeStruct((1, resolution, resolution, 3), jnp.float32))
    finally:
        for cls, call in originals.items():
            cls.__call__ = call

    by_path = {path: node for path, node in nnx.iter_graph(model) if tuple(path) in set(order)}
    layers = []
    for path in order:
        module = by_path[path]
        variables = {k: v for k, v in vars(module).items() if isinstance(v, nnx.Variable)}
        param_kind = {k: kinds.get(path + (k,)) for k in variables}
        if "bn_scale" in param_kind.values() or "bn_bias" in param_kind.values():
            roles = {"bn_scale": "scale", "bn_bias": "bias"}
            arrays = {roles[param_kind[k]]: v for k, v in variables.items() if param_kind[k] in roles}
            for k, v in variables.items():
                if isinstance(v, nnx.BatchStat):
                    arrays[k] = v  # nnx.BatchNorm names its statistics mean / var
            layers.append(Layer(path, "bn", arrays))
            continue
        if list(param_kind.values()) == ["layer_scale"]:
            layers.append(Layer(path, "scale", {"gamma": next(iter(variables.values()))}))
            continue
        kernel = [k for k, pk in param_kind.items() if pk in _KIND_OF_KERNEL]
        if len(kernel) != 1:
            raise FlaxnetsError(f"layer {'.'.join(map(str, path))} has no single kernel (kinds {param_kind})")
        arrays = {"kernel": variables[kernel[0]]}
        arrays.update({"bias": v for k, v in variables.items() if param_kind[k] == "bias"})
        layers.append(Layer(path, _KIND_OF_KERNEL[param_kind[kernel[0]]], arrays))
    return layers


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names, index = class id (synset-sorted order)."""
    return [name for _, name in imagenet_classes()]


def first_few(names: list[str], n: int = 5) -> str:
    """`a, b, c (+N more)` for error messages."""
    more = f" (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def as_float32(array) -> np.ndarray:
    return np.asarray(array, dtype=np.float32)

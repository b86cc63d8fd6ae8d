"""Pretrained weights from other frameworks: PyTorch state dicts (timm, EfficientNet-PyTorch)
and Keras files.

    info = inspect_weights(path)                      # layout, padding, mean/std; no model needed
    model = create_model(name, **info.model_overrides())
    load_weights(model, path)                         # in place; returns the same kind of info

TF-trained checkpoints (timm `tf_*`, EfficientNet-PyTorch, Keras) need TF "SAME" padding and
eps 1e-3, which are fixed when the model is built: hence `inspect_weights` before
`create_model`.
"""

from __future__ import annotations

import pathlib

import jax
from flax import nnx

from flaxnets.errors import FlaxnetsError
import flaxnets.models
from flaxnets.weights import common
from flaxnets.weights.common import WeightsInfo, imagenet_class_names
from flaxnets.weights.keras import is_keras_file, load_keras
from flaxnets.weights.torch import TORCH_SUFFIXES, inspect_torch, load_torch

__all__ = ["WeightsInfo", "create_pretrained", "imagenet_class_names", "inspect_weights", "load_weights"]


def _check(path) -> pathlib.Path:
    path = pathlib.Path(path)
    if not path.is_file():
        raise FlaxnetsError(f"weights file {path} does not exist")
    return path


def inspect_weights(path) -> WeightsInfo:
    """Layout and origin of a weights file: how to build the model (padding, BatchNorm eps and
    momentum via `info.model_overrides()`) and feed it (`info.mean` / `info.std`, None = the
    model's default)."""
    path = _check(path)
    if path.suffix in (".h5", ".keras") and is_keras_file(path):
        # Keras applications are TF models: SAME padding, eps 1e-3; they normalise inside.
        return common.origin_info("keras", "tf")
    if path.suffix in TORCH_SUFFIXES:
        return inspect_torch(path)
    raise FlaxnetsError(
        f"unsupported weights file {path.name}; expected .pth/.pt/.bin/.safetensors (PyTorch) or .weights.h5/.keras (Keras)"
    )


def load_weights(model, path, *, skip_classifier: bool = False, strict: bool = True) -> WeightsInfo:
    """Load pretrained weights into `model` in place, the layout detected from the file.

    skip_classifier: leave the final dense layer as it is (fine-tuning to other classes).
    strict: missing or unexpected layers are an error; otherwise they are listed in the
    returned info. A shape mismatch is always an error naming the tensor and both shapes.
    Returns a `WeightsInfo` with the recommended padding / mean / std and what was loaded.
    """
    path = _check(path)
    info = inspect_weights(path)
    if info.layout == "keras":
        load_keras(model, path, skip_classifier=skip_classifier)
        return info
    return load_torch(model, path, skip_classifier=skip_classifier, strict=strict)


def create_pretrained(name: str, path, **overrides):
    """(model, info): zoo model `name` built as the weights file's origin needs and loaded
    with it. Parameters are never randomly initialised (the model is built abstractly and every
    array comes from the file), which makes this much faster than create_model + load_weights.
    """
    info = inspect_weights(path)
    # Looked up at call time (as the training loop does), so a swapped-in model is used.
    model = nnx.eval_shape(lambda: flaxnets.models.create_model(name, **{**info.model_overrides(), **overrides}))
    info = load_weights(model, path)
    left = [".".join(map(str, p)) for p, v in nnx.to_flat_state(nnx.state(model))
            if isinstance(v.value, jax.ShapeDtypeStruct)]
    if left:
        raise FlaxnetsError(f"{path} leaves {len(left)} arrays of {name} unset: {', '.join(left[:5])}")
    model.eval()
    return model, info

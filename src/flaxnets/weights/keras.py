"""Import Keras 3 `keras.applications` weights (`.weights.h5` or `.keras`) into flaxnets models.

Keras 3 stores a functional model's weights as `layers/<class>_<n>/vars/<i>`, numbered per
layer class in the model's layer order (`conv2d`, `conv2d_1`, ..., `batch_normalization_7`,
...). That order is the order in which the layers are called, so each Keras class stream maps
onto our layers of the matching type, in our call order:

- Conv2D      -> Conv2d (kernel, bias); also our Dense layers when the file has no Dense
                 (MobileNetV3's 1x1-conv head: kernel (1, 1, in, out) -> (in, out))
- DepthwiseConv2D -> DepthwiseConv2d, kernel (k, k, C, 1) -> (k, k, 1, C)
- BatchNormalization -> BatchNorm (gamma, beta, moving_mean, moving_variance)
- Dense       -> Dense (kernel, bias)

Layers without variables and Keras's own preprocessing (`normalization`) are ignored: flaxnets
normalises inputs in the data pipeline with the spec's mean/std.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import zipfile
from collections import defaultdict

import jax.numpy as jnp
import numpy as np

from flaxnets.errors import FlaxnetsError
from flaxnets.models.counting import traced_summary

_STREAMS = {
    "conv2d": "conv", "depthwise_conv2d": "depthwise", "batch_normalization": "bn",
    "dense": "dense",
}
_IGNORED = {"normalization", "rescaling"}
_VAR_NAMES = {
    "Conv2d": ("kernel", "bias"), "DepthwiseConv2d": ("kernel",),
    "BatchNorm": ("scale", "bias", "mean", "var"), "Dense": ("kernel", "bias"),
}


def is_keras_file(path) -> bool:
    """True if `path` is a Keras 3 weights file (`.weights.h5`) or a `.keras` archive."""
    import h5py

    path = os.fspath(path)
    if not os.path.isfile(path):
        return False
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            return "model.weights.h5" in z.namelist()
    if not h5py.is_hdf5(path):
        return False
    with h5py.File(path, "r") as f:
        return "layers" in f


def _read(path) -> dict[str, list[tuple[str, np.ndarray]]]:
    """{stream: [(tensor name, array), ...] in Keras layer order}."""
    import h5py

    path = os.fspath(path)
    if not is_keras_file(path):
        raise FlaxnetsError(f"{path} is not a Keras 3 .weights.h5 or .keras file")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            source = io.BytesIO(z.read("model.weights.h5"))
    else:
        source = path
    layers = defaultdict(list)
    with h5py.File(source, "r") as f:
        for name, group in f["layers"].items():
            match = re.fullmatch(r"(.*?)(?:_(\d+))?", name)
            base, index = match.group(1), int(match.group(2) or 0)
            vars_ = group.get("vars")
            if vars_ is None or len(vars_) == 0 or base in _IGNORED:
                continue
            if base not in _STREAMS:
                raise FlaxnetsError(f"Keras layer {name!r} ({base}) has no flaxnets counterpart")
            tensors = [(f"layers/{name}/vars/{i}", np.asarray(vars_[str(i)]))
                       for i in range(len(vars_))]
            layers[_STREAMS[base]].append((index, tensors))
    return {k: [t for _, t in sorted(v, key=lambda e: e[0])] for k, v in layers.items()}


def _get(root, path):
    node = root
    for key in path.split("/"):
        node = node[int(key)] if key.isdigit() else getattr(node, key)
    return node


def load_keras(model, path, *, skip_classifier: bool = False):
    """Load a Keras 3 applications model's weights from `path` into `model` in place.

    `path` is a `.weights.h5` file or a `.keras` archive of the same architecture (e.g.
    `keras.applications.MobileNetV3Large(include_preprocessing=False)` into
    `create_model("mobilenet_v3_large")`). With `skip_classifier` the last layer (the
    classifier) is left as initialised, so weights with another class count can be loaded.
    BatchNorm running statistics are loaded too. Raises FlaxnetsError naming the first tensor
    whose shape does not fit, with both shapes, or the first missing / surplus layer.
    Returns `model`.
    """
    streams = _read(path)
    rows = traced_summary(model, 32)  # our layers in call order
    if skip_classifier:
        rows = rows[:-1]
    has_dense = "dense" in streams
    position = defaultdict(int)
    for row in rows:
        stream = {"Conv2d": "conv", "DepthwiseConv2d": "depthwise", "BatchNorm": "bn",
                  "Dense": "dense" if has_dense else "conv"}[row.kind]
        layers = streams.get(stream, [])
        if position[stream] >= len(layers):
            raise FlaxnetsError(
                f"Keras file has only {len(layers)} {stream} layers; none left for {row.path}")
        tensors = layers[position[stream]]
        position[stream] += 1
        layer = _get(model, row.path)
        names = [n for n in _VAR_NAMES[row.kind] if getattr(layer, n, None) is not None]
        if len(tensors) != len(names):
            theirs = ", ".join(f"{n} {tuple(a.shape)}" for n, a in tensors)
            ours = ", ".join(f"{row.path}/{n} {tuple(getattr(layer, n).shape)}" for n in names)
            raise FlaxnetsError(f"Keras tensors {theirs} do not fit {ours}")
        for var_name, (tensor_name, array) in zip(names, tensors):
            variable = getattr(layer, var_name)
            if row.kind == "DepthwiseConv2d":
                array = array.transpose(0, 1, 3, 2)
            elif row.kind == "Dense" and stream == "conv" and var_name == "kernel":
                array = array.reshape(array.shape[-2:]) if array.ndim == 4 and array.shape[
                    :2] == (1, 1) else array
            if tuple(array.shape) != tuple(variable.shape):
                raise FlaxnetsError(
                    f"Keras tensor {tensor_name} has shape {tuple(array.shape)} but "
                    f"{row.path}/{var_name} has shape {tuple(variable.shape)}")
            variable.value = jnp.asarray(array, jnp.float32)
    for stream, layers in streams.items():
        extra = len(layers) - position[stream] - (
            1 if skip_classifier and stream == ("dense" if has_dense else "conv") else 0)
        if extra > 0:
            name = layers[position[stream]][0][0].rsplit("/vars", 1)[0]
            raise FlaxnetsError(
                f"Keras file has {extra} more {stream} layer(s) than the model, from {name}")
    return model


def transfer_from_keras(model, keras_model, *, skip_classifier: bool = False):
    """Copy an in-memory Keras model's weights into `model` by saving them to a temporary
    `.weights.h5` and loading that file (so the file path is what gets exercised)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.weights.h5")
        keras_model.save_weights(path)
        return load_keras(model, path, skip_classifier=skip_classifier)

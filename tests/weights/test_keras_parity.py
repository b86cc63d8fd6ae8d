"""Keras 3 applications -> flaxnets: weights load through the file importer and the logits
agree (float32, eval mode, random weights and randomised BatchNorm statistics)."""

import functools
import os

import jax
import numpy as np
import pytest
from flax import nnx

from flaxnets.errors import FlaxnetsError
from flaxnets.models import create_model
from flaxnets.models.layers import conv_implementation
from flaxnets.weights.keras import is_keras_file, load_keras, transfer_from_keras

RESOLUTION = 64


@functools.cache
def _keras_model(builder, seed, **kwargs):
    """A Keras application with random weights and BatchNorm statistics (built once per
    arguments: building and randomising takes most of a minute on 2 cores)."""
    import keras

    # Kernels are drawn below with NumPy: Keras's own random initialisers compile once per kernel
    # shape, which made building EfficientNet-B0 take most of a minute.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keras.initializers.VarianceScaling, "__call__",
                      lambda self, shape, dtype=None: keras.ops.zeros(shape, dtype=dtype))
        model = builder(input_shape=(RESOLUTION, RESOLUTION, 3), weights=None, classes=10,
                        classifier_activation=None, **kwargs)
    rng = np.random.default_rng(seed)
    # Kernels LeCun-normal; Keras starts BN at (1, 0, 0, 1) and biases at 0: randomise them so a
    # swapped or transposed tensor, or a BN in training mode, would show.
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is not None:
            shape = tuple(kernel.shape)
            fan_in = int(np.prod(shape[:2] if isinstance(layer, keras.layers.DepthwiseConv2D)
                                 else shape[:-1]))
            kernel.assign(rng.normal(0.0, np.sqrt(1.0 / fan_in), shape).astype(np.float32))
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape
            layer.gamma.assign(rng.uniform(0.5, 1.5, c))
            layer.beta.assign(rng.normal(0, 0.2, c))
            layer.moving_mean.assign(rng.normal(0, 0.2, c))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, c))
        elif getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape))
    return model


def _keras_logits(model, x):
    """The Keras model's inference logits as one jitted graph (eager layers compile op by op)."""
    step = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=False)[0])
    return np.asarray(step([v.value for v in model.trainable_variables],
                           [v.value for v in model.non_trainable_variables], x))


def _builders():
    import keras

    apps = keras.applications
    no_pre = {"include_preprocessing": False}
    return {
        "mobilenet_v3_large": (apps.MobileNetV3Large, no_pre),
        "mobilenet_v3_small": (apps.MobileNetV3Small, no_pre),
        # Keras EfficientNet always rescales by 1/255 and applies an un-adapted (identity)
        # Normalization layer: fed x * 255 it sees x.
        "efficientnet_b0": (apps.EfficientNetB0, {}),
        "mobilenet_v2": (apps.MobileNetV2, {}),
    }


def _relative_error(ours, reference):
    return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v3_large", "mobilenet_v3_small", "efficientnet_b0",
                                  "mobilenet_v2"])
def test_logits_match_keras(name):
    builder, kwargs = _builders()[name]
    reference = _keras_model(builder, 0, **kwargs)
    x = np.random.default_rng(1).normal(size=(2, RESOLUTION, RESOLUTION, 3)).astype(np.float32)
    scale = 255.0 if name.startswith("efficientnet") else 1.0
    expected = _keras_logits(reference, x * scale)
    model = nnx.eval_shape(lambda: create_model(name, num_classes=10))
    transfer_from_keras(model, reference)
    model.eval()
    # Through the unrolled depthwise / pointwise convolutions, flaxnets' default on the CPU (the
    # rest of the suite runs lax convolutions, see tests/conftest.py).
    with conv_implementation("unrolled"):
        ours = np.asarray(nnx.jit(lambda m, x: m(x))(model, x))
    assert ours.dtype == np.float32 and ours.shape == (2, 10)
    assert _relative_error(ours, expected) < 1e-4


@pytest.mark.slow
def test_keras_archive_mismatch_and_skip_classifier(tmp_path):
    import keras

    reference = _keras_model(keras.applications.MobileNetV3Small, 0, include_preprocessing=False)
    archive = tmp_path / "small.keras"
    reference.save(archive)
    assert is_keras_file(archive) and not is_keras_file(tmp_path / "missing.h5")

    # Another class count: everything but the classifier loads.
    model = nnx.eval_shape(lambda: create_model("mobilenet_v3_small", num_classes=7))
    with pytest.raises(FlaxnetsError, match=r"\(1, 1, 1024, 10\).*\(1024, 7\)|\(1024, 10\).*\(1024, 7\)"):
        load_keras(model, archive)
    model = nnx.eval_shape(lambda: create_model("mobilenet_v3_small", num_classes=7))
    load_keras(model, archive, skip_classifier=True)
    assert isinstance(model.classifier.kernel.value, jax.ShapeDtypeStruct)  # left untouched
    expected = np.asarray(reference.get_layer("conv_2").kernel.value)  # 1024-wide pre-logits
    assert np.allclose(np.asarray(model.pre_logits.kernel.value), expected.reshape(576, 1024))

    # Wrong architecture: the first misfit tensor and both shapes are named.
    large = nnx.eval_shape(lambda: create_model("mobilenet_v3_large", num_classes=10))
    with pytest.raises(FlaxnetsError, match=r"layers/conv2d_1/vars/0 \(1, 1, 16, 8\).*"
                                            r"blocks/0/project_conv/kernel \(1, 1, 16, 16\)"):
        load_keras(large, archive)
    with pytest.raises(FlaxnetsError, match="not a Keras"):
        load_keras(large, os.devnull)


@pytest.mark.slow
def test_weights_h5_file_through_load_weights_gives_the_keras_logits(tmp_path):
    # The user's path: a keras.applications `.weights.h5` file -> the padding / eps it asks for
    # -> flaxnets.load_weights (layout detected from the file) -> the Keras model's logits.
    import flaxnets
    from flaxnets.weights import inspect_weights

    builder, kwargs = _builders()["mobilenet_v3_small"]
    reference = _keras_model(builder, 0, **kwargs)  # the one test_logits_match_keras built
    path = tmp_path / "mobilenet_v3_small.weights.h5"
    reference.save_weights(path)
    info = inspect_weights(path)
    assert (info.layout, info.padding, info.bn_epsilon) == ("keras", "same", 1e-3)
    model = nnx.eval_shape(lambda: create_model("mobilenet_v3_small", num_classes=10, **info.model_overrides()))
    flaxnets.load_weights(model, path)
    model.eval()
    x = np.random.default_rng(4).normal(size=(2, RESOLUTION, RESOLUTION, 3)).astype(np.float32)
    expected = reference.predict(x, verbose=0)  # one compiled graph: faster than eager layers
    ours = np.asarray(nnx.jit(lambda m, x: m(x))(model, x))
    assert ours.shape == (2, 10)
    assert _relative_error(ours, expected) < 1e-4

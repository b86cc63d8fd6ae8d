"""Our multiply-accumulate counts equal those of the keras.applications models, to the unit,
for every model Keras has. Several published figures differ from both
(tests/models/test_counts.py): the gap is between the papers and their reference code."""

import pytest

from flaxnets.models import count_macs, get_spec


def _keras_macs(model) -> int:
    """Conv, depthwise and dense multiply-accumulates per image of a built Keras model, from
    its layers' own kernel sizes and output shapes."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            total += layer.input.shape[-1] * layer.units
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            _, height, width, channels = layer.output.shape
            kh, kw = layer.kernel_size
            if isinstance(layer, keras.layers.DepthwiseConv2D):
                per_output = kh * kw  # one input channel per output channel
            else:
                per_output = kh * kw * layer.input.shape[-1] // layer.groups
            total += height * width * channels * per_output
    return total


KERAS = {
    "mobilenet_v3_large": ("MobileNetV3Large", {}),
    "mobilenet_v3_large_075": ("MobileNetV3Large", {"alpha": 0.75}),
    "mobilenet_v3_large_minimal": ("MobileNetV3Large", {"minimalistic": True}),
    "mobilenet_v3_small": ("MobileNetV3Small", {}),
    "mobilenet_v3_small_075": ("MobileNetV3Small", {"alpha": 0.75}),
    "mobilenet_v3_small_minimal": ("MobileNetV3Small", {"minimalistic": True}),
    "mobilenet_v2": ("MobileNetV2", {}),
    **{f"efficientnet_b{i}": (f"EfficientNetB{i}", {}) for i in range(8)},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(KERAS))
def test_macs_equal_the_keras_reference_to_the_unit(name, monkeypatch):
    import keras

    # Only the layer graph matters: zero kernels skip the random initialisers, which compile once
    # per kernel shape and would make building B7 take most of a minute.
    monkeypatch.setattr(keras.initializers.VarianceScaling, "__call__",
                        lambda self, shape, dtype=None: keras.ops.zeros(shape, dtype=dtype))
    builder, kwargs = KERAS[name]
    r = get_spec(name).resolution
    reference = getattr(keras.applications, builder)(weights=None, input_shape=(r, r, 3), **kwargs)
    assert count_macs(name) == _keras_macs(reference)

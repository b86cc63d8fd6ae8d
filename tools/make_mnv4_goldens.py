"""Write tests/models/goldens/mnv4_logits.npz: logits of TF-Vision's MobileNetV4 backbone plus
classification head, eval mode, with weights from the shared rule in tools/seeded_weights.py;
the initial layer scales TF-Vision gives; and TF-Vision's trainable-parameter counts.

Run once with a Python that has tensorflow and tf-models-official (a scratch venv; the test
suite itself never imports TensorFlow). Made with tensorflow-cpu 2.21.0, tf-keras 2.21.0,
tf-models-official 2.20.0, NumPy 2.4.6 (recorded in the file), from the repository root:

    TF_USE_LEGACY_KERAS=1 /path/to/tfvenv/bin/python tools/make_mnv4_goldens.py

The file holds only the inputs' shape and seed, logits, layer scales, counts and versions; the
test rebuilds the same weights and inputs from the rule. Each TF weight is given the value the
rule draws for the flaxnets parameter it corresponds to (mapped below, block type by block type),
converted to TF's layout: depthwise kernels (k, k, C, 1); the pre-logits 1x1 conv (1, 1, 960,
1280); the multi-query attention einsum weights of `MultiQueryAttentionLayerV2` (query [heads,
key_dim, C], output [C, heads, value_dim]). Every TF weight must be assigned exactly once.

Keys, per flaxnets model name:
* `<name>`: logits (all five variants; the layer scales drawn by the rule too, U(0.5, 1.5),
  so that every branch of the hybrids moves the logits);
* `<name>_tf_layer_scale` (hybrids): logits with TF-Vision's `MNV4LayerScale` variables left
  at the value TF-Vision initialises them to (`layer_scale_init_value`, nn_blocks.py), every
  other weight by the rule; the test keeps our model's own initial layer scales likewise;
* `<name>_layer_scale_init` (hybrids): those initial TF-Vision gammas, block after block,
  concatenated;
* `<name>_params`: trainable parameters of TF-Vision's backbone + `ClassificationModel` head
  built with 1000 classes (TF-Vision's yamls use 1001: 1281 more), counted by tf_keras;
* `<name>_drop_rates`: TF-Vision's stochastic-depth rate of every block for the yaml's setting.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402
from official.vision.modeling import classification_model  # noqa: E402
from official.vision.modeling.backbones import mobilenet  # noqa: E402
from official.vision.modeling.layers import nn_blocks  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seeded_weights import seeded_images, seeded_value  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "tests" / "models" / "goldens" / "mnv4_logits.npz"
NUM_CLASSES = 10
RESOLUTION = 96
BATCH = 2
SEED = 0
# flaxnets name -> (TF-Vision model_id, norm momentum, norm epsilon), as the yamls set them.
MODELS = {
    "mobilenet_v4_conv_small": ("MobileNetV4ConvSmall", 0.95, 1e-6),
    "mobilenet_v4_conv_medium": ("MobileNetV4ConvMedium", 0.997, 1e-3),
    "mobilenet_v4_conv_large": ("MobileNetV4ConvLarge", 0.997, 1e-3),
    "mobilenet_v4_hybrid_medium": ("MobileNetV4HybridMedium", 0.997, 1e-3),
    "mobilenet_v4_hybrid_large": ("MobileNetV4HybridLarge", 0.997, 1e-3),
}
HYBRIDS = ("mobilenet_v4_hybrid_medium", "mobilenet_v4_hybrid_large")
# flaxnets name -> (model_id, stochastic_depth_drop_rate, flat_stochastic_depth_drop_rate) of
# its yaml: the per-block rates TF-Vision gives are stored as `<name>_drop_rates`.
DROP_RATES = {
    "mobilenet_v4_conv_medium": ("MobileNetV4ConvMedium", 0.075, False),
    "mobilenet_v4_hybrid_medium": ("MobileNetV4HybridMedium", 0.075, False),
    "mobilenet_v4_hybrid_large": ("MobileNetV4HybridLarge", 0.35, False),
    "mobilenet_v4_conv_large": ("MobileNetV4ConvLarge", 0.2, True),
}
BLOCK_TYPES = (mobilenet.Conv2DBNBlock, nn_blocks.InvertedBottleneckBlock,
               nn_blocks.UniversalInvertedBottleneckBlock, nn_blocks.MultiHeadSelfAttentionBlock)
BN_ROLES = {"gamma": "scale", "beta": "bias", "moving_mean": "mean", "moving_variance": "var"}


class Assigner:
    """Gives each TF variable the rule's value for its flaxnets path, once."""

    def __init__(self, model, layer_scale):
        self.pending = {id(v): v.name for v in model.weights}
        # False: layer-scale gammas keep TF-Vision's initial value.
        self.layer_scale = layer_scale

    def set(self, variable, path, convert=lambda a: a, shape=None):
        value = seeded_value(path, tuple(shape or variable.shape), SEED)
        value = convert(value)
        assert tuple(value.shape) == tuple(variable.shape), (path, value.shape, variable.shape)
        variable.assign(value)
        del self.pending[id(variable)]

    def gamma(self, block, path):
        if self.layer_scale:
            self.set(block._layer_scale._gamma, f"{path}.layer_scale.gamma")
        else:
            del self.pending[id(block._layer_scale._gamma)]

    def conv(self, layer, path):
        self.set(layer.kernel, f"{path}.kernel")

    def depthwise(self, layer, path):
        k = layer.depthwise_kernel
        self.set(k, f"{path}.kernel", lambda a: a.transpose(0, 1, 3, 2),
                 (k.shape[0], k.shape[1], 1, k.shape[2]))

    def bn(self, layer, path):
        for v in layer.weights:
            role = BN_ROLES[v.name.split("/")[-1].split(":")[0]]
            self.set(v, f"{path}.{role}")


def blocks_of(backbone):
    return [layer for layer in backbone.layers if isinstance(layer, BLOCK_TYPES)]


def assign(model, backbone, layer_scale=True):
    a = Assigner(model, layer_scale)
    blocks = blocks_of(backbone)
    stem, body, head, pre_logits = blocks[0], blocks[1:-2], blocks[-2], blocks[-1]
    a.conv(stem._conv0, "stem_conv")
    a.bn(stem._norm0, "stem_bn")
    for i, block in enumerate(body):
        p = f"blocks.{i}"
        if isinstance(block, mobilenet.Conv2DBNBlock):
            a.conv(block._conv0, f"{p}.conv")
            a.bn(block._norm0, f"{p}.bn")
        elif isinstance(block, nn_blocks.InvertedBottleneckBlock):
            a.conv(block._conv0, f"{p}.expand_conv")
            a.bn(block._norm0, f"{p}.expand_bn")
            a.conv(block._conv2, f"{p}.project_conv")
            a.bn(block._norm2, f"{p}.project_bn")
        elif isinstance(block, nn_blocks.UniversalInvertedBottleneckBlock):
            if block._start_dw_kernel_size:
                a.depthwise(block._start_dw_conv, f"{p}.start_conv")
                a.bn(block._start_dw_norm, f"{p}.start_bn")
            a.conv(block._expand_conv, f"{p}.expand_conv")
            a.bn(block._expand_norm, f"{p}.expand_bn")
            if block._middle_dw_kernel_size:
                a.depthwise(block._middle_dw_conv, f"{p}.middle_conv")
                a.bn(block._middle_dw_norm, f"{p}.middle_bn")
            a.conv(block._proj_conv, f"{p}.project_conv")
            a.bn(block._proj_norm, f"{p}.project_bn")
            if block._use_layer_scale:
                a.gamma(block, p)
        else:
            a.bn(block._input_norm, f"{p}.norm")
            mqa = block._multi_query_attention
            if isinstance(mqa, nn_blocks.OptimizedMultiQueryAttentionLayerWithDownSampling):
                a.conv(mqa._query_proj, f"{p}.query_proj")
                for name in ("key", "value"):
                    if block._kv_strides > 1:
                        a.depthwise(getattr(mqa, f"_{name}_dw_conv"), f"{p}.{name}_down_conv")
                        a.bn(getattr(mqa, f"_{name}_dw_norm"), f"{p}.{name}_down_bn")
                    a.conv(getattr(mqa, f"_{name}_proj"), f"{p}.{name}_proj")
                a.conv(mqa._output_proj, f"{p}.output_proj")
            else:  # MultiQueryAttentionLayerV2: einsum weights
                heads, dim = block._num_heads, block._key_dim
                c = mqa._key_proj.shape[0]
                a.set(mqa._query_proj, f"{p}.query_proj.kernel",
                      lambda w: w[0, 0].reshape(c, heads, dim).transpose(1, 2, 0),
                      (1, 1, c, heads * dim))
                a.set(mqa._key_proj, f"{p}.key_proj.kernel", lambda w: w[0, 0], (1, 1, c, dim))
                a.set(mqa._value_proj, f"{p}.value_proj.kernel", lambda w: w[0, 0],
                      (1, 1, c, dim))
                a.set(mqa._output_proj, f"{p}.output_proj.kernel",
                      lambda w: w[0, 0].reshape(heads, dim, c).transpose(2, 0, 1),
                      (1, 1, heads * dim, c))
            if block._use_layer_scale:
                a.gamma(block, p)
    a.conv(head._conv0, "head_conv")
    a.bn(head._norm0, "head_bn")
    k = pre_logits._conv0.kernel  # a dense layer on the pooled features here
    a.set(k, "pre_logits.kernel", lambda w: w[None, None], (k.shape[2], k.shape[3]))
    a.bn(pre_logits._norm0, "pre_logits_bn")
    dense = model.layers[-1]
    a.set(dense.kernel, "classifier.kernel")
    a.set(dense.bias, "classifier.bias")
    assert not a.pending, f"unassigned TF weights: {sorted(a.pending.values())}"


def build(model_id, momentum, epsilon, num_classes):
    """TF-Vision's backbone + classification head, as the MobileNetV4 yamls configure them."""
    tf_keras.backend.clear_session()
    specs = tf_keras.layers.InputSpec(shape=[None, RESOLUTION, RESOLUTION, 3])
    backbone = mobilenet.MobileNet(model_id=model_id, input_specs=specs,
                                   norm_momentum=momentum, norm_epsilon=epsilon)
    model = classification_model.ClassificationModel(
        backbone=backbone, num_classes=num_classes, input_specs=specs, dropout_rate=0.2,
        norm_momentum=momentum, norm_epsilon=epsilon)
    return model, backbone


def main():
    x = seeded_images((BATCH, RESOLUTION, RESOLUTION, 3), SEED)
    logits = {}
    for name, (model_id, momentum, epsilon) in MODELS.items():
        model, backbone = build(model_id, momentum, epsilon, 1000)
        logits[f"{name}_params"] = np.int64(
            sum(int(np.prod(v.shape)) for v in model.trainable_weights))
        for layer_scale in (True, False) if name in HYBRIDS else (True,):
            model, backbone = build(model_id, momentum, epsilon, NUM_CLASSES)
            if not layer_scale:
                logits[f"{name}_layer_scale_init"] = np.concatenate([
                    b._layer_scale._gamma.numpy() for b in blocks_of(backbone)
                    if getattr(b, "_use_layer_scale", False)])
            assign(model, backbone, layer_scale)
            key = name if layer_scale else f"{name}_tf_layer_scale"
            logits[key] = model(tf.constant(x), training=False).numpy()
            print(key, logits[key][0, :4], logits[f"{name}_params"])
    for name, (model_id, rate, flat) in DROP_RATES.items():
        tf_keras.backend.clear_session()
        backbone = mobilenet.MobileNet(
            model_id=model_id, stochastic_depth_drop_rate=rate,
            flat_stochastic_depth_drop_rate=flat,
            input_specs=tf_keras.layers.InputSpec(shape=[None, 64, 64, 3]))
        body = [layer for layer in backbone.layers if isinstance(layer, BLOCK_TYPES)][1:-2]
        # Conv2DBNBlocks have no stochastic depth: NaN.
        logits[f"{name}_drop_rates"] = np.array(
            [getattr(b, "_stochastic_depth_drop_rate", None) or 0.0
             if not isinstance(b, mobilenet.Conv2DBNBlock) else np.nan for b in body])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT, **logits, resolution=RESOLUTION, batch=BATCH, seed=SEED, num_classes=NUM_CLASSES,
        command="TF_USE_LEGACY_KERAS=1 python tools/make_mnv4_goldens.py",
        versions=f"tensorflow {tf.__version__}, " + ", ".join(
            f"{d} {version(d)}" for d in ("tf-keras", "tf-models-official", "numpy")))
    print("wrote", OUT, OUT.stat().st_size, "bytes")


if __name__ == "__main__":
    main()

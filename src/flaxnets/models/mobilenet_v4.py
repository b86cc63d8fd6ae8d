"""MobileNetV4 (Qin et al., 2024) Conv-S/M/L and Hybrid-M/L, block for block as in TF-Vision
`official/vision/modeling/backbones/mobilenet.py` (MNV4*_BLOCK_SPECS) and timm
`timm/models/mobilenetv3.py` (`_gen_mobilenet_v4`), which agree.

Stages are grouped as timm's `arch_def` groups them (its `blocks.S.I` names). Blocks: "conv_bn"
(timm `cn`), "fused_ib" (`er`), "uib" (`uir`: start depthwise `a`, middle depthwise `k`, 0 =
none) and "mqa" (mobile multi-query attention, `mqa`). The head is the references': a 1x1 conv
to 960 with BN and activation, global pooling, a 1x1 conv to 1280 without bias with BN and
activation (here a dense layer on the pooled features), dropout, classifier. Hybrids have
layer scale 1e-5 on every "uib" and "mqa" block (TF-Vision `use_layer_scale=True`, timm
`layer_scale_init_value=1e-5`); Hybrid-L uses GELU. Stochastic depth follows TF-Vision
(`blocks.drop_path_rates`, rule "tf_vision_specs"), whose recipes set it.
"""

from __future__ import annotations

import dataclasses

from flaxnets.models.blocks import (
    Architecture, ConvBnAct, FusedInvertedResidual, MobileAttention, Stage,
    UniversalInvertedResidual,
)
from flaxnets.models.registry import (
    IMAGENET_MEAN, IMAGENET_STD, ModelSpec, register_family, register_models,
)


def _cn(k, s, c, act):
    return Stage(ConvBnAct, 1, s, c, ConvBnAct.Args(k, act))


def _er(k, s, e, c, act):
    return Stage(FusedInvertedResidual, 1, s, c, FusedInvertedResidual.Args(k, e, act))


def _uir(start, mid, s, e, c, act, r=1):
    return Stage(UniversalInvertedResidual, r, s, c,
                 UniversalInvertedResidual.Args(start, mid, e, act))


def _mqa(heads, key_dim, kv_stride, c, act):
    # The 3x3 kernel is that of the key/value downsampling depthwise convs; attention has no
    # activation of its own (`act` keeps the tables uniform).
    return Stage(MobileAttention, 1, 1, c,
                 MobileAttention.Args(heads, key_dim, kv_stride, kernel_size=3))


def _conv_small(a):
    return (
        (_cn(3, 2, 32, a), _cn(1, 1, 32, a)),
        (_cn(3, 2, 96, a), _cn(1, 1, 64, a)),
        (_uir(5, 5, 2, 3, 96, a), _uir(0, 3, 1, 2, 96, a, r=4), _uir(3, 0, 1, 4, 96, a)),
        (_uir(3, 3, 2, 6, 128, a), _uir(5, 5, 1, 4, 128, a), _uir(0, 5, 1, 4, 128, a),
         _uir(0, 5, 1, 3, 128, a), _uir(0, 3, 1, 4, 128, a, r=2)),
    )


def _conv_medium(a):
    return (
        (_er(3, 2, 4, 48, a),),
        (_uir(3, 5, 2, 4, 80, a), _uir(3, 3, 1, 2, 80, a)),
        (_uir(3, 5, 2, 6, 160, a), _uir(3, 3, 1, 4, 160, a, r=2), _uir(3, 5, 1, 4, 160, a),
         _uir(3, 3, 1, 4, 160, a), _uir(3, 0, 1, 4, 160, a), _uir(0, 0, 1, 2, 160, a),
         _uir(3, 0, 1, 4, 160, a)),
        (_uir(5, 5, 2, 6, 256, a), _uir(5, 5, 1, 4, 256, a), _uir(3, 5, 1, 4, 256, a, r=2),
         _uir(0, 0, 1, 4, 256, a), _uir(3, 0, 1, 4, 256, a), _uir(3, 5, 1, 2, 256, a),
         _uir(5, 5, 1, 4, 256, a), _uir(0, 0, 1, 4, 256, a, r=2), _uir(5, 0, 1, 2, 256, a)),
    )


def _conv_large(a):
    return (
        (_er(3, 2, 4, 48, a),),
        (_uir(3, 5, 2, 4, 96, a), _uir(3, 3, 1, 4, 96, a)),
        (_uir(3, 5, 2, 4, 192, a), _uir(3, 3, 1, 4, 192, a, r=3), _uir(3, 5, 1, 4, 192, a),
         _uir(5, 3, 1, 4, 192, a, r=5), _uir(3, 0, 1, 4, 192, a)),
        (_uir(5, 5, 2, 4, 512, a, r=4), _uir(5, 0, 1, 4, 512, a), _uir(5, 3, 1, 4, 512, a),
         _uir(5, 0, 1, 4, 512, a, r=2), _uir(5, 3, 1, 4, 512, a), _uir(5, 5, 1, 4, 512, a),
         _uir(5, 0, 1, 4, 512, a, r=3)),
    )


def _hybrid_medium(a):
    def mqa24():
        return _mqa(4, 64, 2, 160, a)

    def mqa12():
        return _mqa(4, 64, 1, 256, a)

    return (
        (_er(3, 2, 4, 48, a),),
        (_uir(3, 5, 2, 4, 80, a), _uir(3, 3, 1, 2, 80, a)),
        (_uir(3, 5, 2, 6, 160, a), _uir(0, 0, 1, 2, 160, a), _uir(3, 3, 1, 4, 160, a),
         _uir(3, 5, 1, 4, 160, a), mqa24(), _uir(3, 3, 1, 4, 160, a), mqa24(),
         _uir(3, 0, 1, 4, 160, a), mqa24(), _uir(3, 3, 1, 4, 160, a), mqa24(),
         _uir(3, 0, 1, 4, 160, a)),
        (_uir(5, 5, 2, 6, 256, a), _uir(5, 5, 1, 4, 256, a), _uir(3, 5, 1, 4, 256, a, r=2),
         _uir(0, 0, 1, 2, 256, a), _uir(3, 5, 1, 2, 256, a), _uir(0, 0, 1, 2, 256, a),
         _uir(0, 0, 1, 4, 256, a), mqa12(), _uir(3, 0, 1, 4, 256, a), mqa12(),
         _uir(5, 5, 1, 4, 256, a), mqa12(), _uir(5, 0, 1, 4, 256, a), mqa12(),
         _uir(5, 0, 1, 4, 256, a)),
    )


def _hybrid_large(a):
    def mqa24():
        return _mqa(8, 48, 2, 192, a)

    def mqa12():
        return _mqa(8, 64, 1, 512, a)

    return (
        (_er(3, 2, 4, 48, a),),
        (_uir(3, 5, 2, 4, 96, a), _uir(3, 3, 1, 4, 96, a)),
        (_uir(3, 5, 2, 4, 192, a), _uir(3, 3, 1, 4, 192, a, r=3), _uir(3, 5, 1, 4, 192, a),
         _uir(5, 3, 1, 4, 192, a, r=2), mqa24(), _uir(5, 3, 1, 4, 192, a), mqa24(),
         _uir(5, 3, 1, 4, 192, a), mqa24(), _uir(5, 3, 1, 4, 192, a), mqa24(),
         _uir(3, 0, 1, 4, 192, a)),
        (_uir(5, 5, 2, 4, 512, a, r=4), _uir(5, 0, 1, 4, 512, a), _uir(5, 3, 1, 4, 512, a),
         _uir(5, 0, 1, 4, 512, a, r=2), _uir(5, 3, 1, 4, 512, a), _uir(5, 5, 1, 4, 512, a),
         mqa12(), _uir(5, 0, 1, 4, 512, a), mqa12(), _uir(5, 0, 1, 4, 512, a), mqa12(),
         _uir(5, 0, 1, 4, 512, a), mqa12(), _uir(5, 0, 1, 4, 512, a)),
    )


# variant: (stage groups, stem channels, activation, layer scale)
VARIANTS = {
    "conv_small": (_conv_small, 32, "relu", None),
    "conv_medium": (_conv_medium, 32, "relu", None),
    "conv_large": (_conv_large, 24, "relu", None),
    "hybrid_medium": (_hybrid_medium, 32, "relu", 1e-5),
    "hybrid_large": (_hybrid_large, 24, "gelu", 1e-5),
}


@register_family("mobilenet_v4")
def architecture(variant: str = "conv_medium") -> Architecture:
    """The MobileNetV4 `variant` (a key of VARIANTS) architecture."""
    table, stem, act, layer_scale = VARIANTS[variant]
    groups = table(act)
    starts, rows = [], []
    for group in groups:
        starts.append(len(rows))
        rows.extend(group)
    if layer_scale is not None:  # every "uib" and "mqa" block
        rows = [dataclasses.replace(r, args=dataclasses.replace(r.args, layer_scale=layer_scale))
                if r.block in (UniversalInvertedResidual, MobileAttention) else r for r in rows]
    return Architecture(
        stages=tuple(rows), stem_channels=stem, stem_activation=act,
        head_channels=960, head_activation=act, pre_logits_channels=1280,
        pre_logits_scale="never", pre_logits_norm=True,
        depth_rule="tf_vision_specs", stage_starts=tuple(starts),
    )


def _spec(variant, resolution, top1, *, dropout=0.2, stochastic_depth=0.0, rule=None,
          bn_momentum=0.997, bn_epsilon=1e-3) -> ModelSpec:
    # Defaults from the TF-Vision experiment yaml of each variant
    # (official/vision/configs/experiments/image_classification/
    # imagenet_mobilenetv4_<variant>_tpu.yaml): input size, dropout, stochastic depth and its
    # rule (flat_stochastic_depth_drop_rate), BN momentum/epsilon, the top-1 in its header.
    # TF-Vision normalises with the ImageNet mean/std (official/vision/ops/preprocess_ops.py
    # MEAN_RGB / STDDEV_RGB), resizes bilinearly and centre-crops 0.875 for evaluation.
    return ModelSpec(f"mobilenet_v4_{variant}", "mobilenet_v4", {"variant": variant}, resolution,
                     0.875, "bilinear", IMAGENET_MEAN, IMAGENET_STD, dropout, top1,
                     stochastic_depth_rate=stochastic_depth, stochastic_depth_rule=rule,
                     bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, kernel_init="tf_vision")


register_models(
    _spec("conv_small", 224, 73.8, dropout=0.3, bn_momentum=0.95, bn_epsilon=1e-6),
    _spec("conv_medium", 256, 79.9, stochastic_depth=0.075),
    _spec("conv_large", 384, 82.92, stochastic_depth=0.2, rule="flat"),
    _spec("hybrid_medium", 256, 80.7, stochastic_depth=0.075),
    _spec("hybrid_large", 384, 83.7, stochastic_depth=0.35),
)

"""EfficientNetV2 B0-B3 and S/M/L (Tan & Le, 2021), as in the reference, google/automl
`efficientnetv2` (effnetv2_configs.py: block tables and per-variant sizes; effnetv2_model.py:
blocks, stem, head, `round_filters`; hparams.py `base_config`), which keras.applications
`EfficientNetV2*` and timm's `tf_efficientnetv2_*` (timm/models/efficientnet.py
`_gen_efficientnetv2_base` / `_s` / `_m` / `_l`) follow.

Early stages are fused MBConv (`conv_type` 1): with expansion 1 a kxk conv, BN and SiLU with a
residual (`ConvBnAct` with skip, timm `cn..._skip`), otherwise a kxk expansion conv with the
stride and a 1x1 projection (`FusedInvertedResidual`, timm `er`). Later stages are MBConv with
squeeze-excite 0.25 of the block input (`InvertedResidual`, timm `ir`). SiLU (swish)
everywhere, TF "SAME" padding, BN epsilon 1e-3 and momentum 0.9 (hparams.py `bn_epsilon`,
`bn_momentum`), stochastic depth 0.2 growing with the block index (hparams.py
`survival_prob=0.8`; effnetv2_model.py `EffNetV2Model.call`: 1 - 0.2 * idx / n survives), stem
3x3/2 of the first block's input width, head 1x1 conv to 1280, pooling, dropout, classifier.
Width rounding is the reference's `round_filters`: the nearest multiple of 8, without
EfficientNet's "never more than 10% down" rule (timm `round_limit=0.` for B0-B3), so B3's
16 * 1.2 = 19.2 channels round to 16, not 24.
"""

from __future__ import annotations

import re

from flaxnets.models.blocks import (
    Architecture, ConvBnAct, FusedInvertedResidual, InvertedResidual, Stage,
)
from flaxnets.models.registry import (
    IMAGENET_MEAN, IMAGENET_STD, ModelSpec, register_family, register_models,
)

# The reference's block strings (effnetv2_configs.py `v2_base_block`, `v2_s_block`,
# `v2_m_block`, `v2_l_block`): r repeats, k kernel, s stride, e expansion, i / o input / output
# channels, se squeeze-excite ratio, c1 fused.
BASE = ("r1_k3_s1_e1_i32_o16_c1", "r2_k3_s2_e4_i16_o32_c1", "r2_k3_s2_e4_i32_o48_c1",
        "r3_k3_s2_e4_i48_o96_se0.25", "r5_k3_s1_e6_i96_o112_se0.25",
        "r8_k3_s2_e6_i112_o192_se0.25")
S = ("r2_k3_s1_e1_i24_o24_c1", "r4_k3_s2_e4_i24_o48_c1", "r4_k3_s2_e4_i48_o64_c1",
     "r6_k3_s2_e4_i64_o128_se0.25", "r9_k3_s1_e6_i128_o160_se0.25",
     "r15_k3_s2_e6_i160_o256_se0.25")
M = ("r3_k3_s1_e1_i24_o24_c1", "r5_k3_s2_e4_i24_o48_c1", "r5_k3_s2_e4_i48_o80_c1",
     "r7_k3_s2_e4_i80_o160_se0.25", "r14_k3_s1_e6_i160_o176_se0.25",
     "r18_k3_s2_e6_i176_o304_se0.25", "r5_k3_s1_e6_i304_o512_se0.25")
L = ("r4_k3_s1_e1_i32_o32_c1", "r7_k3_s2_e4_i32_o64_c1", "r7_k3_s2_e4_i64_o96_c1",
     "r10_k3_s2_e4_i96_o192_se0.25", "r19_k3_s1_e6_i192_o224_se0.25",
     "r25_k3_s2_e6_i224_o384_se0.25", "r7_k3_s1_e6_i384_o640_se0.25")

# effnetv2_configs.py `efficientnetv2_params`: (block table, width, depth, train size, eval
# size, dropout); the published ImageNet-1k top-1 (%) is the comment beside each entry there.
VARIANTS = {
    "b0": (BASE, 1.0, 1.0, 192, 224, 0.2),
    "b1": (BASE, 1.0, 1.1, 192, 240, 0.2),
    "b2": (BASE, 1.1, 1.2, 208, 260, 0.3),
    "b3": (BASE, 1.2, 1.4, 240, 300, 0.3),
    "s": (S, 1.0, 1.0, 300, 384, 0.2),
    "m": (M, 1.0, 1.0, 384, 480, 0.3),
    "l": (L, 1.0, 1.0, 384, 480, 0.4),
}
TOP1 = {"b0": 78.7, "b1": 79.8, "b2": 80.5, "b3": 82.1, "s": 83.9, "m": 85.2, "l": 85.7}


def round_filters(channels: float, width: float) -> int:
    """effnetv2_model.py `round_filters` (depth_divisor 8, min_depth 8)."""
    return max(8, int(channels * width + 4) // 8 * 8)


def _decode(block: str) -> dict[str, float]:
    return {key: float(value) for key, value in re.findall(r"([a-z]+)(\d[\d.]*)", block)}


def _stage(block: str) -> Stage:
    o = _decode(block)
    repeats, kernel, stride, expand = int(o["r"]), int(o["k"]), int(o["s"]), o["e"]
    out = int(o["o"])
    if o.get("c") == 1 and expand == 1:
        return Stage(ConvBnAct, repeats, stride, out, ConvBnAct.Args(kernel, "swish", skip=True))
    if o.get("c") == 1:
        if o.get("se"):
            raise ValueError(f"{block}: squeeze-excite in a fused block is not built")
        return Stage(FusedInvertedResidual, repeats, stride, out,
                     FusedInvertedResidual.Args(kernel, expand, "swish"))
    return Stage(InvertedResidual, repeats, stride, out,
                 InvertedResidual.Args(kernel, expand, o.get("se"), "swish", se_base="in"))


@register_family("efficientnetv2")
def architecture(variant: str = "s") -> Architecture:
    """The EfficientNetV2 `variant` ("b0".."b3", "s", "m", "l") architecture."""
    table, width, depth, _, _, _ = VARIANTS[variant]
    stages = tuple(_stage(b) for b in table)
    return Architecture(
        stages=stages, stem_channels=int(_decode(table[0])["i"]), stem_activation="swish",
        head_channels=1280, head_activation="swish", width=width, depth=depth,
        channel_rounding=round_filters,
        # Each table row is one stage of timm's layout (blocks.S.I), whatever its width.
        stage_starts=tuple(range(len(stages))),
    )


def _spec(variant: str) -> ModelSpec:
    _, _, _, train_size, eval_size, dropout = VARIANTS[variant]
    if variant.startswith("b"):
        # B0-B3 train and evaluate with EfficientNet-V1's pipeline (effnetv2_configs.py
        # augname 'effnetv1_autoaug' -> preprocessing.py `preprocess_image` ->
        # preprocess_legacy.py): ImageNet mean/std, bicubic, centre crop size / (size + 32).
        return ModelSpec(f"efficientnetv2_{variant}", "efficientnetv2", {"variant": variant},
                         eval_size, eval_size / (eval_size + 32), "bicubic", IMAGENET_MEAN,
                         IMAGENET_STD, dropout, TOP1[variant], stochastic_depth_rate=0.2,
                         bn_momentum=0.9, bn_epsilon=1e-3, kernel_init="tf_tpu",
                         eval_crop="tf_tpu", defaults={"train_resolution": train_size})
    # S/M/L: preprocessing.py `preprocess_for_eval` resizes the whole image (bilinear) at an
    # eval size of 320 or more, without a crop, and normalises (x - 128) / 128.
    return ModelSpec(f"efficientnetv2_{variant}", "efficientnetv2", {"variant": variant},
                     eval_size, 1.0, "bilinear", (128.0,) * 3, (128.0,) * 3, dropout,
                     TOP1[variant], stochastic_depth_rate=0.2, bn_momentum=0.9, bn_epsilon=1e-3,
                     kernel_init="tf_tpu", eval_crop="tf_vision",
                     defaults={"train_resolution": train_size})


register_models(*(_spec(v) for v in VARIANTS))

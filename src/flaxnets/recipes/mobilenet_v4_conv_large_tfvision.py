"""MobileNetV4 Conv-L, TF-Vision recipe: AdamW, RandAugment m15, Mixup/CutMix p0.2, flat stochastic depth 0.2, 500 epochs at batch 16384.

Source: tensorflow/models
official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_large_tpu.yaml
("Top-1 Acc: 82.92% @ 500 epoches", its first line). Every value and where it comes
from: `SOURCES` (TF-Vision defaults the yaml leaves unset: see
`flaxnets.recipes._mobilenet_v4_tfvision`). TF-Vision trains 1001 classes (a background class);
this recipe 1000. With soft_labels the yaml's loss takes no label smoothing; Mixup/CutMix
smooths every batch's labels by 0.1 (mixed or not, official/vision/ops/augment.py
`MixupAndCutmix.distort`), which our loss's label smoothing equals (smoothing is linear).

Command:
    flaxnets train --recipe mobilenet_v4_conv_large_tfvision --data /data/imagenet --workdir runs/mobilenet_v4_conv_large_tfvision
"""

from flaxnets.config import Config
from flaxnets.recipes import _mobilenet_v4_tfvision as mnv4

PUBLISHED_TOP1 = 82.92

Y = "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_large_tpu.yaml"
#: Where each value comes from: dotted config key (as for --set) -> citation.
SOURCES = {
    **mnv4.DEFAULT_SOURCES,
    "model.dtype": f"{Y}:4",
    "data.image_size": f"{Y}:8",
    "model.name": f"{Y}:11",
    "model.stochastic_depth_rule": f"{Y}:12",
    "model.stochastic_depth_rate": f"{Y}:13",
    "model.bn_epsilon": f"{Y}:16",
    "model.bn_momentum": f"{Y}:17",
    "model.dropout_rate": f"{Y}:18",
    "optimizer.l2": f"{Y}:20",
    "loss.label_smoothing": f"{Y}:37",
    "train.global_batch_size": f"{Y}:27",
    "schedule.reference_batch": f"{Y}:27",
    "data.cutout_const": f"{Y}:31",
    "data.randaugment_exclude_ops": f"{Y}:32",
    "data.randaugment_magnitude": f"{Y}:33",
    "data.augment": f"{Y}:34",
    "data.cutmix_alpha": f"{Y}:36",
    "data.mixup_alpha": f"{Y}:38",
    "data.mix_prob": f"{Y}:39",
    "data.mix_switch_prob": f"{Y}:40",
    "train.epochs": f"{Y}:48",
    "schedule.steps_per_epoch_mode": f"{Y}:51",
    "ema.decay": f"{Y}:55",
    "schedule.decay_epochs": f"{Y}:58",
    "schedule.base_lr": f"{Y}:59",
    "schedule.name": f"{Y}:61",
    "optimizer.name": f"{Y}:63",
    "optimizer.weight_decay_exclude": f"{Y}:64",
    "optimizer.grad_clip_norm": f"{Y}:65",
    "optimizer.weight_decay": f"{Y}:66",
    "schedule.warmup_epochs": f"{Y}:71",
}


def get_config() -> Config:
    """The recipe's configuration."""
    return mnv4.config(
        "mobilenet_v4_conv_large_tfvision",
        model='mobilenet_v4_conv_large',
        batch=16384,
        train_steps=39000,
        base_lr=0.004,
        weight_decay=0.2,
        dropout=0.2,
        image_size=384,
        magnitude=15,
        stochastic_depth=0.2,
        flat_stochastic_depth=True,
        cutout_const=40,
        mixup_alpha=0.8,
        cutmix_alpha=1.0,
        mix_prob=0.2,
        source="TF-Vision imagenet_mobilenetv4_conv_large_tpu.yaml")

"""MobileNetV4 Conv-M, TF-Vision recipe: AdamW, RandAugment m15 p0.7, 500 epochs at batch 4096.

Source: tensorflow/models
official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml
("Top-1 Acc: 79.9% @ 500 epochs", its first line). Every value and where it comes
from: `SOURCES` (TF-Vision defaults the yaml leaves unset: see
`flaxnets.recipes._mobilenet_v4_tfvision`). TF-Vision trains 1001 classes (a background class);
this recipe 1000.

Command:
    flaxnets train --recipe mobilenet_v4_conv_medium_tfvision --data /data/imagenet --workdir runs/mobilenet_v4_conv_medium_tfvision
"""

from flaxnets.config import Config
from flaxnets.recipes import _mobilenet_v4_tfvision as mnv4

PUBLISHED_TOP1 = 79.9

Y = "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml"
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
    "loss.label_smoothing": f"{Y}:21",
    "train.global_batch_size": f"{Y}:25",
    "schedule.reference_batch": f"{Y}:25",
    "data.cutout_const": f"{Y}:29",
    "data.randaugment_exclude_ops": f"{Y}:30",
    "data.randaugment_magnitude": f"{Y}:31",
    "data.randaugment_prob_to_apply": f"{Y}:32",
    "data.augment": f"{Y}:33",
    "train.epochs": f"{Y}:41",
    "schedule.steps_per_epoch_mode": f"{Y}:44",
    "ema.decay": f"{Y}:47",
    "schedule.decay_epochs": f"{Y}:50",
    "schedule.base_lr": f"{Y}:51",
    "schedule.name": f"{Y}:53",
    "optimizer.name": f"{Y}:55",
    "optimizer.weight_decay_exclude": f"{Y}:56",
    "optimizer.grad_clip_norm": f"{Y}:57",
    "optimizer.weight_decay": f"{Y}:58",
    "schedule.warmup_epochs": f"{Y}:63",
}


def get_config() -> Config:
    """The recipe's configuration."""
    return mnv4.config(
        "mobilenet_v4_conv_medium_tfvision",
        model='mobilenet_v4_conv_medium',
        batch=4096,
        train_steps=156000,
        base_lr=0.004,
        weight_decay=0.1,
        dropout=0.2,
        image_size=256,
        magnitude=15,
        stochastic_depth=0.075,
        flat_stochastic_depth=False,
        prob_to_apply=0.7,
        cutout_const=20,
        source="TF-Vision imagenet_mobilenetv4_conv_medium_tpu.yaml")

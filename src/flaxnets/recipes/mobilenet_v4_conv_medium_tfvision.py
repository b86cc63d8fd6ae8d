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

#: Where each value comes from: dotted config key (as for --set) -> citation.
SOURCES = {
    **mnv4.DEFAULT_SOURCES,
    "model.dtype": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:4",
    "data.image_size": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:8",
    "model.name": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:11",
    "model.stochastic_depth_rule": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:12",
    "model.stochastic_depth_rate": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:13",
    "model.bn_epsilon": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:16",
    "model.bn_momentum": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:17",
    "model.dropout_rate": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:18",
    "optimizer.l2": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:20",
    "loss.label_smoothing": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:21",
    "train.global_batch_size": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:25",
    "schedule.reference_batch": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:25",
    "data.cutout_const": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:29",
    "data.randaugment_exclude_ops": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:30",
    "data.randaugment_magnitude": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:31",
    "data.randaugment_prob_to_apply": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:32",
    "data.augment": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:33",
    "train.epochs": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:41",
    "schedule.steps_per_epoch_mode": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:44",
    "ema.decay": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:47",
    "schedule.decay_epochs": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:50",
    "schedule.base_lr": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:51",
    "schedule.name": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:53",
    "optimizer.name": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:55",
    "optimizer.weight_decay_exclude": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:56",
    "optimizer.grad_clip_norm": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:57",
    "optimizer.weight_decay": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:58",
    "schedule.warmup_epochs": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml:63",
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

"""MobileNetV4 Conv-S, TF-Vision recipe: AdamW (b1 0.6) + L2, RandAugment m9, EMA, ~9,600 epochs at batch 4096.

Source: tensorflow/models
official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml
("Top-1 Acc: 73.8% @ ~9623 epochs", its first line). Every value and where it comes
from: `SOURCES` (TF-Vision defaults the yaml leaves unset: see
`flaxnets.recipes._mobilenet_v4_tfvision`). TF-Vision trains 1001 classes (a background class);
this recipe 1000.

Command:
    flaxnets train --recipe mobilenet_v4_conv_small_tfvision --data /data/imagenet --workdir runs/mobilenet_v4_conv_small_tfvision
"""

from flaxnets.config import Config
from flaxnets.recipes import _mobilenet_v4_tfvision as mnv4

PUBLISHED_TOP1 = 73.8

#: Where each value comes from: dotted config key (as for --set) -> citation.
SOURCES = {
    **mnv4.DEFAULT_SOURCES,
    "model.dtype": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:4",
    "data.image_size": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:8",
    "model.name": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:11",
    "model.bn_epsilon": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:14",
    "model.bn_momentum": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:15",
    "model.dropout_rate": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:16",
    "optimizer.l2": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:18",
    "loss.label_smoothing": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:19",
    "train.global_batch_size": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:23",
    "schedule.reference_batch": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:23",
    "data.cutout_const": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:27",
    "data.randaugment_exclude_ops": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:28",
    "data.randaugment_magnitude": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:29",
    "data.randaugment_prob_to_apply": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:30",
    "data.translate_const": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:31",
    "data.augment": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:32",
    "train.epochs": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:43",
    "schedule.steps_per_epoch_mode": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:46",
    "ema.decay": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:52",
    "ema.start_step": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:53",
    "ema.dynamic_decay": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:54",
    "schedule.decay_epochs": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:57",
    "schedule.base_lr": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:58",
    "schedule.name": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:60",
    "optimizer.name": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:62",
    "optimizer.b1": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:63",
    "optimizer.eps": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:64",
    "optimizer.weight_decay_exclude": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:65",
    "optimizer.grad_clip_norm": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:66",
    "optimizer.weight_decay": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:67",
    "schedule.warmup_epochs": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml:72",
}


def get_config() -> Config:
    """The recipe's configuration."""
    return mnv4.config(
        "mobilenet_v4_conv_small_tfvision",
        model='mobilenet_v4_conv_small',
        batch=4096,
        train_steps=3002368,
        base_lr=0.002,
        weight_decay=0.01,
        dropout=0.3,
        image_size=224,
        magnitude=9,
        dtype='float32',
        bn_momentum=0.95,
        bn_epsilon=1e-06,
        l2=1e-05,
        b1=0.6,
        eps=1e-06,
        prob_to_apply=0.5,
        cutout_const=20,
        translate_const=20,
        ema_decay=0.9999,
        ema_start_step=1560,
        ema_dynamic_decay=False,
        source="TF-Vision imagenet_mobilenetv4_conv_small_tpu.yaml")

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

Y = "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_small_tpu.yaml"
#: Where each value comes from: dotted config key (as for --set) -> citation.
SOURCES = {
    **mnv4.DEFAULT_SOURCES,
    "model.dtype": f"{Y}:4",
    "data.image_size": f"{Y}:8",
    "model.name": f"{Y}:11",
    "model.bn_epsilon": f"{Y}:14",
    "model.bn_momentum": f"{Y}:15",
    "model.dropout_rate": f"{Y}:16",
    "optimizer.l2": f"{Y}:18",
    "loss.label_smoothing": f"{Y}:19",
    "train.global_batch_size": f"{Y}:23",
    "schedule.reference_batch": f"{Y}:23",
    "data.cutout_const": f"{Y}:27",
    "data.randaugment_exclude_ops": f"{Y}:28",
    "data.randaugment_magnitude": f"{Y}:29",
    "data.randaugment_prob_to_apply": f"{Y}:30",
    "data.translate_const": f"{Y}:31",
    "data.augment": f"{Y}:32",
    "train.epochs": f"{Y}:43",
    "schedule.steps_per_epoch_mode": f"{Y}:46",
    "ema.decay": f"{Y}:52",
    "ema.start_step": f"{Y}:53",
    "ema.dynamic_decay": f"{Y}:54",
    "schedule.decay_epochs": f"{Y}:57",
    "schedule.base_lr": f"{Y}:58",
    "schedule.name": f"{Y}:60",
    "optimizer.name": f"{Y}:62",
    "optimizer.b1": f"{Y}:63",
    "optimizer.eps": f"{Y}:64",
    "optimizer.weight_decay_exclude": f"{Y}:65",
    "optimizer.grad_clip_norm": f"{Y}:66",
    "optimizer.weight_decay": f"{Y}:67",
    "schedule.warmup_epochs": f"{Y}:72",
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

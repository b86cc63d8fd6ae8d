"""MobileNetV4 Hybrid-M, TF-Vision recipe: AdamW, RandAugment m15 p0.7, 500 epochs at batch 16384.

Source: tensorflow/models
official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml
("Top-1 Acc: 80.7% @ 500 epochs", its first line). Every value and where it comes
from: `SOURCES` (TF-Vision defaults the yaml leaves unset: see
`flaxnets.recipes._mobilenet_v4_tfvision`). TF-Vision trains 1001 classes (a background class);
this recipe 1000.

Command:
    flaxnets train --recipe mobilenet_v4_hybrid_medium_tfvision --data /data/imagenet --workdir runs/mobilenet_v4_hybrid_medium_tfvision
"""

from flaxnets.config import Config
from flaxnets.recipes import _mobilenet_v4_tfvision as mnv4

PUBLISHED_TOP1 = 80.7

Y = "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml"
#: Where each value comes from: dotted config key (as for --set) -> citation.
SOURCES = {
    **mnv4.DEFAULT_SOURCES,
    "model.dtype": f"{Y}:4",
    "data.image_size": f"{Y}:8",
    "model.name": f"{Y}:11",
    "model.stochastic_depth_rule": f"{Y}:12",
    "model.stochastic_depth_rate": f"{Y}:13",
    "model.bn_momentum": f"{Y}:16",
    "model.dropout_rate": f"{Y}:17",
    "optimizer.l2": f"{Y}:19",
    "loss.label_smoothing": f"{Y}:20",
    "train.global_batch_size": f"{Y}:24",
    "schedule.reference_batch": f"{Y}:24",
    "data.cutout_const": f"{Y}:28",
    "data.randaugment_exclude_ops": f"{Y}:29",
    "data.randaugment_magnitude": f"{Y}:30",
    "data.randaugment_magnitude_std": f"{Y}:31",
    "data.randaugment_num_layers": f"{Y}:32",
    "data.randaugment_prob_to_apply": f"{Y}:33",
    "data.translate_const": f"{Y}:34",
    "data.augment": f"{Y}:35",
    "train.epochs": f"{Y}:43",
    "schedule.steps_per_epoch_mode": f"{Y}:46",
    "ema.decay": f"{Y}:49",
    "schedule.decay_epochs": f"{Y}:52",
    "schedule.base_lr": f"{Y}:53",
    "schedule.name": f"{Y}:55",
    "optimizer.name": f"{Y}:57",
    "optimizer.weight_decay_exclude": f"{Y}:58",
    "optimizer.grad_clip_norm": f"{Y}:59",
    "optimizer.weight_decay": f"{Y}:60",
    "schedule.warmup_epochs": f"{Y}:66",
}


def get_config() -> Config:
    """The recipe's configuration."""
    return mnv4.config(
        "mobilenet_v4_hybrid_medium_tfvision",
        model='mobilenet_v4_hybrid_medium',
        batch=16384,
        train_steps=39000,
        base_lr=0.016,
        weight_decay=0.1,
        dropout=0.2,
        image_size=256,
        magnitude=15,
        stochastic_depth=0.075,
        flat_stochastic_depth=False,
        prob_to_apply=0.7,
        cutout_const=20,
        translate_const=10,
        source="TF-Vision imagenet_mobilenetv4_hybrid_medium_tpu.yaml")

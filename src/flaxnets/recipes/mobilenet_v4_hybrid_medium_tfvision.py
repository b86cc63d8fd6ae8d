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

#: Where each value comes from: dotted config key (as for --set) -> citation.
SOURCES = {
    **mnv4.DEFAULT_SOURCES,
    "model.dtype": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:4",
    "data.image_size": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:8",
    "model.name": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:11",
    "model.stochastic_depth_rule": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:12",
    "model.stochastic_depth_rate": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:13",
    "model.bn_momentum": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:16",
    "model.dropout_rate": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:17",
    "optimizer.l2": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:19",
    "loss.label_smoothing": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:20",
    "train.global_batch_size": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:24",
    "schedule.reference_batch": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:24",
    "data.cutout_const": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:28",
    "data.randaugment_exclude_ops": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:29",
    "data.randaugment_magnitude": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:30",
    "data.randaugment_magnitude_std": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:31",
    "data.randaugment_num_layers": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:32",
    "data.randaugment_prob_to_apply": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:33",
    "data.translate_const": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:34",
    "data.augment": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:35",
    "train.epochs": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:43",
    "schedule.steps_per_epoch_mode": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:46",
    "ema.decay": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:49",
    "schedule.decay_epochs": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:52",
    "schedule.base_lr": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:53",
    "schedule.name": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:55",
    "optimizer.name": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:57",
    "optimizer.weight_decay_exclude": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:58",
    "optimizer.grad_clip_norm": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:59",
    "optimizer.weight_decay": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:60",
    "schedule.warmup_epochs": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_medium_tpu.yaml:66",
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

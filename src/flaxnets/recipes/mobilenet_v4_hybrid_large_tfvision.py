"""MobileNetV4 Hybrid-L, TF-Vision recipe: AdamW, RandAugment m15, Mixup/CutMix p0.3, 500 epochs at batch 16384.

Source: tensorflow/models
official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml
("Top-1 Acc: 83.7% @ 500 epochs", its first line). Every value and where it comes
from: `SOURCES` (TF-Vision defaults the yaml leaves unset: see
`flaxnets.recipes._mobilenet_v4_tfvision`). TF-Vision trains 1001 classes (a background class);
this recipe 1000. With soft_labels the yaml's loss takes no label smoothing; Mixup/CutMix
smooths every batch's labels by 0.1 (mixed or not, official/vision/ops/augment.py
`MixupAndCutmix.distort`), which our loss's label smoothing equals (smoothing is linear).

Command:
    flaxnets train --recipe mobilenet_v4_hybrid_large_tfvision --data /data/imagenet --workdir runs/mobilenet_v4_hybrid_large_tfvision
"""

from flaxnets.config import Config
from flaxnets.recipes import _mobilenet_v4_tfvision as mnv4

PUBLISHED_TOP1 = 83.7

#: Where each value comes from: dotted config key (as for --set) -> citation.
SOURCES = {
    **mnv4.DEFAULT_SOURCES,
    "model.dtype": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:4",
    "data.image_size": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:8",
    "model.name": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:11",
    "model.stochastic_depth_rule": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:12",
    "model.stochastic_depth_rate": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:13",
    "model.bn_epsilon": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:16",
    "model.bn_momentum": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:17",
    "model.dropout_rate": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:18",
    "optimizer.l2": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:20",
    "loss.label_smoothing": "official/vision/configs/common.py:98",
    "train.global_batch_size": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:27",
    "schedule.reference_batch": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:27",
    "data.randaugment_exclude_ops": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:31",
    "data.randaugment_magnitude": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:32",
    "data.augment": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:33",
    "data.cutmix_alpha": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:35",
    "data.mixup_alpha": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:36",
    "data.mix_prob": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:37",
    "train.epochs": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:45",
    "schedule.steps_per_epoch_mode": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:48",
    "ema.decay": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:52",
    "schedule.decay_epochs": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:55",
    "schedule.base_lr": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:56",
    "schedule.alpha": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:57",
    "schedule.name": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:59",
    "optimizer.name": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:61",
    "optimizer.weight_decay_exclude": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:62",
    "optimizer.grad_clip_norm": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:63",
    "optimizer.weight_decay": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:64",
    "schedule.warmup_epochs": "official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_hybrid_large_tpu.yaml:69",
}


def get_config() -> Config:
    """The recipe's configuration."""
    return mnv4.config(
        "mobilenet_v4_hybrid_large_tfvision",
        model='mobilenet_v4_hybrid_large',
        batch=16384,
        train_steps=39000,
        base_lr=0.01,
        weight_decay=0.2,
        dropout=0.2,
        image_size=384,
        magnitude=15,
        stochastic_depth=0.35,
        flat_stochastic_depth=False,
        alpha=0.001,
        mixup_alpha=0.8,
        cutmix_alpha=1.0,
        mix_prob=0.3,
        source="TF-Vision imagenet_mobilenetv4_hybrid_large_tpu.yaml")

"""What the five TF-Vision MobileNetV4 recipes share: the yamls' common form and the TF-Vision
defaults they leave unset, with the line each value comes from (`DEFAULT_SOURCES`).

Each yaml (official/vision/configs/experiments/image_classification/
imagenet_mobilenetv4_*_tpu.yaml in tensorflow/models) runs on the `mobilenet_imagenet`
experiment: AdamW (`AdamWeightDecay`, a Keras Adam: epsilon added to the uncorrected sqrt(v);
decay lr * rate * w on every variable but BatchNorm's), a linear warmup of 1,560 steps from 0 to
the cosine's own value, cosine decay over the whole run, RandAugment, label smoothing 0.1,
per-replica BatchNorm (use_sync_bn false), inputs normalised with the ImageNet mean/std.
Steps become epochs of floor(1,281,167 / batch) steps, as TF-Vision's steps_per_loop.
BatchNorm per replica: the yamls do not name their TPU topology; we assume 128 examples per
replica (TF-Vision sizes its 4096 batches for a TPU v3-32, 32 replicas), also for 16,384.
"""

from __future__ import annotations

from flaxnets.config import (Config, DataConfig, EmaConfig, LossConfig, ModelConfig, OptimizerConfig,
                             ScheduleConfig, TrainConfig)

from flaxnets.models.registry import IMAGENET_MEAN, IMAGENET_STD
from flaxnets.recipes._references import TFV_MOVING_VARIANCE

NUM_TRAIN = 1_281_167

_IC = "official/vision/configs/image_classification.py"
_COMMON = "official/vision/configs/common.py"
_OPT = "official/modeling/optimization/configs/optimizer_config.py"
_LR = "official/modeling/optimization/configs/learning_rate_config.py"

#: Values every MobileNetV4 recipe takes from TF-Vision's code rather than its yaml.
DEFAULT_SOURCES = {
    "model.kernel_init": "official/vision/modeling/backbones/mobilenet.py:1230",
    "model.bn_group_size": f"{_IC}:381",
    "model.bn_moving_variance": TFV_MOVING_VARIANCE,
    "optimizer.b2": f"{_OPT}:184",
    "optimizer.epsilon_hat": "official/modeling/optimization/legacy_adamw.py:50",
    "optimizer.l2_exclude": "official/vision/modeling/backbones/mobilenet.py:1240",
    "schedule.warmup_start_lr": f"{_LR}:271",
    "schedule.warmup_target": f"{_LR}:260",
    "data.crop": "official/vision/dataloaders/classification_input.py:73",
    "data.interpolation": f"{_IC}:63 (tf_resize_method bilinear, train and eval)",
    "data.mean": "official/vision/ops/preprocess_ops.py:31",
    "data.std": "official/vision/ops/preprocess_ops.py:32",
    "data.num_train_examples": f"{_IC}:146",
    "data.randaugment_magnitude_std": f"{_COMMON}:65",
    "data.randaugment_num_layers": f"{_COMMON}:61",
    "data.translate_const": f"{_COMMON}:64",
    "data.cutout_const": f"{_COMMON}:63",
    "data.randaugment_prob_to_apply": f"{_COMMON}:66",
    "data.mix_switch_prob": f"{_COMMON}:97",
    "schedule.alpha": f"{_LR}:136",
    "optimizer.b1": f"{_OPT}:183",
    "optimizer.eps": f"{_OPT}:185",
    "model.bn_epsilon": f"{_IC}:381",
    "model.stochastic_depth_rate": "official/vision/configs/backbones.py:100",
    "model.stochastic_depth_rule": "official/vision/configs/backbones.py:104",
}

#: Examples per BatchNorm group (see the module docstring).
BN_GROUP = 128


def config(name: str, *, model: str, batch: int, train_steps: int, base_lr: float,
           weight_decay: float, dropout: float, image_size: int, magnitude: float,
           dtype: str = "bfloat16", bn_momentum: float = 0.997, bn_epsilon: float = 1e-3,
           stochastic_depth: float = 0.0, flat_stochastic_depth: bool = True,
           l2: float = 0.0, b1: float = 0.9, eps: float = 1e-7, alpha: float = 0.0,
           prob_to_apply: float | None = None, cutout_const: float = 40.0,
           translate_const: float = 10.0, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0,
           mix_prob: float = 1.0, ema_decay: float | None = None, ema_start_step: int = 0,
           ema_dynamic_decay: bool = True,
           source: str) -> Config:
    """One MobileNetV4 recipe from its yaml's values (defaults: TF-Vision's)."""
    steps_per_epoch = NUM_TRAIN // batch
    return Config(
        name=name,
        source=source,
        model=ModelConfig(
            name=model, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, dropout_rate=dropout,
            stochastic_depth_rate=stochastic_depth,
            stochastic_depth_rule="flat" if flat_stochastic_depth else "tf_vision_specs",
            kernel_init="tf_vision", dtype=dtype, bn_group_size=BN_GROUP, bn_moving_variance="unbiased"),
        data=DataConfig(
            image_size=image_size, crop="tf_vision", interpolation="bilinear", mean=IMAGENET_MEAN, std=IMAGENET_STD,
            augment="randaugment", randaugment_num_layers=2, randaugment_magnitude=magnitude,
            randaugment_magnitude_std=0.0, randaugment_prob_to_apply=prob_to_apply,
            randaugment_exclude_ops=("Cutout",), cutout_const=cutout_const,
            translate_const=translate_const, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha,
            mix_prob=mix_prob, mix_switch_prob=0.5, num_train_examples=NUM_TRAIN),
        optimizer=OptimizerConfig(
            name="adamw", b1=b1, b2=0.999, eps=eps, epsilon_hat=True,
            weight_decay=weight_decay, weight_decay_exclude=("bn_scale", "bn_bias"), l2=l2,
            l2_exclude=("bn_scale", "bn_bias", "bias", "depthwise_kernel", "layer_scale"),
            grad_clip_norm=None),
        schedule=ScheduleConfig(
            name="cosine", base_lr=base_lr, reference_batch=batch,
            warmup_epochs=1560 / steps_per_epoch, warmup_start_lr=0.0, warmup_target="schedule",
            alpha=alpha, steps_per_epoch_mode="floor"),
        loss=LossConfig(label_smoothing=0.1),
        train=TrainConfig(global_batch_size=batch, epochs=train_steps / steps_per_epoch),
        ema=EmaConfig(decay=ema_decay, dynamic_decay=ema_dynamic_decay, start_step=ema_start_step),
    )

"""MobileNet v3 Large, TF-Vision Model Garden recipe: AdamW + AutoAugment, 700 epochs at batch 4096.

Source: tensorflow/models official/vision/configs/experiments/image_classification/
imagenet_mobilenetv3large_tpu.yaml ("~75.7% top-1"), run as TF-Vision runs its MobileNet yamls:
on top of the `mobilenet_imagenet` experiment factory (official/vision/configs/image_classification.py).
The AdamW is TF-Vision's AdamWeightDecay (decay `lr * 0.1 * w`, every parameter except BatchNorm's,
no gradient clipping). The seed run of this recipe in JAX reached 74.42% (without the warmup below:
its schedule was a plain cosine from 0.004).

Warmup: the yaml states none, but it overrides only `learning_rate` of the factory's
optimizer_config, and the factory sets `warmup: linear, warmup_steps 5 * steps_per_epoch,
warmup_learning_rate 0` (image_classification.py:420-425). Loading the factory and overriding it
with the yaml (tf-models-official 2.20, `params_dict.override_params_dict`) keeps that warmup:
TF-Vision runs a linear ramp from 0 over the first 1,560 steps to the cosine's own value at step
1,560 (LinearWarmup, official/modeling/optimization/lr_schedule.py:129), then the cosine, which
counts from step 0. Under the bare `image_classification` factory (no warmup) the yaml would run
without one; the MobileNet yamls are written for `mobilenet_imagenet` (its 312-step epoch is the
yaml's `steps_per_loop` comment), so this recipe has the warmup.

Normalisation: ImageNet mean/std x 255 (classification_input.py:251, MEAN_RGB/STDDEV_RGB in
preprocess_ops.py:29-32), not [-1, 1].

BatchNorm: TF-Vision computes it per replica (`use_sync_bn=False`, image_classification.py:381).
The yaml does not name its TPU slice; this recipe assumes 32 replicas (a 4x4 TPU v3 slice, as the
MobileNetV3 paper trained), i.e. 128 examples per replica, which is also what the seed run used
(1024 per step on a TPU v2-8: 128 per core). `--set model.bn_group_size=none` gives global BN.

Command:
    flaxnets train --recipe mobilenet_v3_large_tfvision --data /data/imagenet --workdir runs/mnv3l_tfvision
    # on hardware that cannot hold 4096: --set train.grad_accum_steps=4 (4 x 1024 per step)

Notes: the yaml runs 218,000 steps ("700 epochs"; 700 x 312 would be 218,400), so the run and the
cosine last 218000/312 epochs. No EMA (a seed run with EMA 0.9999 reached only 61.5%).
"""

from flaxnets.config import (Config, DataConfig, EmaConfig, LossConfig, ModelConfig, OptimizerConfig,
                             ScheduleConfig, TrainConfig)
from flaxnets.models.registry import IMAGENET_MEAN, IMAGENET_STD
from flaxnets.recipes._references import (MNV3_LARGE_YAML, TFV_ADAMW, TFV_BACKBONES, TFV_FACTORY,
                                          tf_vision_sources)

PUBLISHED_TOP1 = 75.7

Y = MNV3_LARGE_YAML
#: Where each value comes from: dotted config key (as for --set) -> citation.
SOURCES = {
    **tf_vision_sources(Y),
    "model.name": f"{Y}:12 (MobileNetV3Large, filter_size_scale 1.0)",
    "model.bn_momentum": f"{Y}:17",
    "model.bn_epsilon": f"{Y}:16",
    "model.dropout_rate": f"{Y}:18",
    "model.stochastic_depth_rate": f"{TFV_BACKBONES}:100 (MobileNet default 0.0; the yaml sets none)",
    "model.bn_group_size": (f"{TFV_FACTORY}:381 (use_sync_bn=False: per replica); 128 per replica assumes 32 "
                            "replicas at 4096 (the yaml names no slice; see the docstring)"),
    "data.augment": f"{Y}:33 (autoaug)",
    "data.autoaugment_policy": f"{Y}:30",
    "data.cutout_const": f"{Y}:31",
    "data.translate_const": f"{Y}:32",
    "optimizer.name": f"{Y}:68-70 (AdamWeightDecay)",
    "optimizer.b1": f"{Y}:59",
    "optimizer.b2": f"{Y}:60",
    "optimizer.eps": f"{Y}:63",
    "optimizer.epsilon_hat": f"{TFV_ADAMW}:51 (AdamWeightDecay is Keras Adam: eps added to sqrt(v_hat))",
    "optimizer.weight_decay": f"{Y}:69",
    "optimizer.weight_decay_exclude": f"{Y}:64 (exclude_from_weight_decay: batch_normalization)",
    "optimizer.l2": f"{Y}:20",
    "optimizer.grad_clip_norm": f"{Y}:66 (gradient_clip_norm 0.0: none)",
    "schedule.name": f"{Y}:55",
    "schedule.base_lr": f"{Y}:52",
    "schedule.reference_batch": f"{Y}:26 (the yaml's lr is for its batch of 4096)",
    "schedule.warmup_epochs": (f"{TFV_FACTORY}:423 (5 * steps_per_epoch = 1,560 steps; the yaml overrides "
                               "learning_rate only, so the factory's warmup stays)"),
    "schedule.warmup_start_lr": f"{TFV_FACTORY}:424",
    "schedule.alpha": f"{Y}:50",
    "schedule.decay_epochs": f"{Y}:51 (decay_steps = train_steps: the cosine spans the run)",
    "loss.label_smoothing": f"{Y}:22",
    "train.global_batch_size": f"{Y}:26",
    "train.epochs": f"{Y}:41 (218,000 steps) / {Y}:44 (312 steps per epoch)",
    "ema.decay": f"{TFV_FACTORY}:398-427 (no ema in the factory's optimizer_config; the yaml adds none)",
}


def get_config() -> Config:
    """The recipe's configuration."""
    return Config(
        name="mobilenet_v3_large_tfvision",
        source="TF-Vision imagenet_mobilenetv3large_tpu.yaml under the mobilenet_imagenet experiment",
        model=ModelConfig(name="mobilenet_v3_large", bn_momentum=0.997, bn_epsilon=1e-3, dropout_rate=0.2,
                          stochastic_depth_rate=0.0, kernel_init="tf_vision", dtype="bfloat16",
                          bn_group_size=128, bn_moving_variance="unbiased"),
        data=DataConfig(image_size=224, crop="tf_vision", crop_area_range=(0.08, 1.0),
                        crop_aspect_range=(0.75, 4.0 / 3.0), flip=True, eval_crop_fraction=0.875,
                        interpolation="bilinear", mean=IMAGENET_MEAN, std=IMAGENET_STD,
                        augment="autoaugment", autoaugment_policy="v0", cutout_const=100, translate_const=250,
                        num_train_examples=1_281_167),
        optimizer=OptimizerConfig(name="adamw", b1=0.9, b2=0.999, eps=1e-7, epsilon_hat=True,
                                  weight_decay=0.1, weight_decay_exclude=("bn_scale", "bn_bias"),
                                  l2=0.0, grad_clip_norm=None),
        schedule=ScheduleConfig(name="cosine", base_lr=0.004, reference_batch=4096, warmup_epochs=5,
                                warmup_start_lr=0.0, warmup_target="schedule", alpha=0.0, decay_epochs=None,
                                steps_per_epoch_mode="floor"),
        loss=LossConfig(label_smoothing=0.1),
        train=TrainConfig(global_batch_size=4096, epochs=218_000 / 312),
        ema=EmaConfig(decay=None),
    )

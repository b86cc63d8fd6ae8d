"""MobileNet v3 Small, TF-Vision Model Garden recipe: RMSProp, exponential decay, 1000 epochs.

Source: tensorflow/models official/vision/configs/experiments/image_classification/
imagenet_mobilenetv3small_tpu.yaml ("67.5% top-1 and 87.6% top-5"), on top of the
`mobilenet_imagenet` experiment factory (official/vision/configs/image_classification.py).
lr = 0.01 x 0.99^floor(step / 936) with a linear warmup from 0.001 over the first 1,560 steps up
to the schedule's value at step 1,560 (TF-Vision LinearWarmup); EMA 0.9999 over all weights
including BatchNorm statistics, with TF-Vision's dynamic decay.

Warmup: unlike the Large yaml, this yaml states its warmup (yaml:59-63), overriding the factory's
(image_classification.py:420-425) field by field: 1,560 steps as in the factory, from 0.001 instead
of 0. Loading the factory and overriding it with the yaml (tf-models-official 2.20) gives
lr(0) = 0.001, lr(1559) = 0.0098943, lr(1560) = 0.0099 = 0.01 x 0.99, which this recipe reproduces.

Normalisation: ImageNet mean/std x 255 (classification_input.py:251, MEAN_RGB/STDDEV_RGB in
preprocess_ops.py:29-32), not [-1, 1]. BatchNorm per replica (`use_sync_bn: false`, yaml:18);
128 examples per replica assumes 32 replicas at 4096, as for `mobilenet_v3_large_tfvision`.

Command:
    flaxnets train --recipe mobilenet_v3_small_tfvision --data /data/imagenet --workdir runs/mnv3s_tfvision

Notes: TF-Vision builds Keras' legacy RMSprop, whose mean-square accumulator starts at 0 (TF1's
starts at 1.0); eps 0.002 inside the square root. `l2_weight_decay: 1e-5` becomes Keras
l2(1e-5 / 2) kernel regularisers, i.e. 1e-5 * w in the gradient of conv and dense kernels only
(no bias, BatchNorm or depthwise regulariser in the TF-Vision MobileNet blocks).
"""

from flaxnets.config import (Config, DataConfig, EmaConfig, LossConfig, ModelConfig, OptimizerConfig,
                             ScheduleConfig, TrainConfig)
from flaxnets.models.registry import IMAGENET_MEAN, IMAGENET_STD
from flaxnets.recipes._references import (MNV3_SMALL_YAML, TFV_BACKBONES, TFV_EMA, TFV_FACTORY,
                                          TFV_MOBILENET, TFV_OPTIMIZERS, tf_vision_sources)

PUBLISHED_TOP1 = 67.5

Y = MNV3_SMALL_YAML
#: Where each value comes from: dotted config key (as for --set) -> citation.
SOURCES = {
    **tf_vision_sources(Y),
    "model.name": f"{Y}:12 (MobileNetV3Small, filter_size_scale 1.0)",
    "model.bn_momentum": f"{Y}:16",
    "model.bn_epsilon": f"{Y}:17",
    "model.dropout_rate": f"{Y}:19",
    "model.stochastic_depth_rate": f"{TFV_BACKBONES}:100 (MobileNet default 0.0; the yaml sets none)",
    "model.bn_group_size": (f"{Y}:18 (use_sync_bn false: per replica); 128 per replica assumes 32 replicas "
                            "at 4096 (the yaml names no slice)"),
    "data.augment": f"{TFV_FACTORY}:42-43 (aug_type None; the yaml sets none)",
    "optimizer.name": f"{Y}:44 (rmsprop -> Keras legacy RMSprop, {TFV_OPTIMIZERS}:46)",
    "optimizer.decay": f"{Y}:46 (rho)",
    "optimizer.momentum": f"{Y}:47",
    "optimizer.eps": f"{Y}:48",
    "optimizer.initial_scale": f"{TFV_OPTIMIZERS}:46 (Keras legacy RMSprop starts its rms at 0)",
    "optimizer.l2": f"{Y}:21 (l2(1e-5 / 2) kernel regularisers: 1e-5 * w in the gradient)",
    "optimizer.l2_exclude": (f"{TFV_MOBILENET}:1240 (regularize_depthwise False: no depthwise regulariser, "
                             "official/vision/modeling/layers/nn_blocks.py:608-611); kernel regularisers only, "
                             "no bias or BatchNorm one"),
    "optimizer.weight_decay": f"{Y}:44 (RMSProp: no decoupled decay)",
    "schedule.name": f"{Y}:50",
    "schedule.base_lr": f"{Y}:52",
    "schedule.reference_batch": f"{Y}:27 (the yaml's lr is for its batch of 4096)",
    "schedule.warmup_epochs": f"{Y}:62 (1,560 steps = 5 x 312)",
    "schedule.warmup_start_lr": f"{Y}:63",
    "schedule.decay_epochs": f"{Y}:53 (936 steps = 3 x 312)",
    "schedule.decay_rate": f"{Y}:54",
    "schedule.staircase": f"{Y}:55",
    "loss.label_smoothing": f"{Y}:23",
    "train.global_batch_size": f"{Y}:27",
    "train.epochs": f"{Y}:36 (312,000 steps = 1000 x 312)",
    "ema.decay": f"{Y}:57",
    "ema.include_batch_stats": f"{Y}:58 (trainable_weights_only false)",
    "ema.dynamic_decay": f"{TFV_EMA}:264 (dynamic_decay default True)",
}


def get_config() -> Config:
    """The recipe's configuration."""
    return Config(
        name="mobilenet_v3_small_tfvision",
        source="TF-Vision imagenet_mobilenetv3small_tpu.yaml under the mobilenet_imagenet experiment",
        model=ModelConfig(name="mobilenet_v3_small", bn_momentum=0.997, bn_epsilon=1e-3, dropout_rate=0.2,
                          stochastic_depth_rate=0.0, kernel_init="tf_vision", dtype="bfloat16",
                          bn_group_size=128, bn_moving_variance="unbiased"),
        data=DataConfig(image_size=224, crop="tf_vision", crop_area_range=(0.08, 1.0),
                        crop_aspect_range=(0.75, 4.0 / 3.0), flip=True, eval_crop_fraction=0.875,
                        interpolation="bilinear", mean=IMAGENET_MEAN, std=IMAGENET_STD, augment="none",
                        num_train_examples=1_281_167),
        optimizer=OptimizerConfig(name="rmsprop", decay=0.9, momentum=0.9, eps=0.002,
                                  initial_scale=0.0, weight_decay=0.0, l2=1e-5,
                                  l2_exclude=("bn_scale", "bn_bias", "bias", "depthwise_kernel")),
        schedule=ScheduleConfig(name="exponential", base_lr=0.01, reference_batch=4096, warmup_epochs=5,
                                warmup_start_lr=0.001, warmup_target="schedule", decay_epochs=3,
                                decay_rate=0.99, staircase=True, steps_per_epoch_mode="floor"),
        loss=LossConfig(label_smoothing=0.1),
        train=TrainConfig(global_batch_size=4096, epochs=1000),
        ema=EmaConfig(decay=0.9999, include_batch_stats=True, dynamic_decay=True),
    )

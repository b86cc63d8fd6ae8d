"""Shared body of the TF-TPU EfficientNet recipes (B0..B7): tensorflow/tpu
models/official/efficientnet (main.py flags, utils.py, efficientnet_builder.py, preprocessing.py).

Per-variant resolution and dropout are the model family's table (`flaxnets.models.efficientnet.SCALING`,
the reference's `efficientnet_params`), read here rather than restated.

BatchNorm: `TpuBatchNormalization` (utils.py:141-163) computes the statistics per replica on up to
8 replicas and over groups of max(8, replicas // 8) replicas above that. This recipe assumes the
reference's default batch of 2048 (main.py:128) on one 8-core TPU device (v2-8 / v3-8, the single
`--tpu` of the README's training command): 2048 / 8 = 256 examples per replica. At batch 2048 the
grouping gives 256 again on 64 or more cores (128 cores: groups of 16 x 16 examples), but 512 / 1024
on 32 / 16 cores. (The paper's own runs used batch 4096 with more cores for the bigger variants,
tensorflow/tpu issue 546.) `--set model.bn_group_size=none` gives statistics over the whole batch.
"""

from flaxnets.config import (Config, DataConfig, EmaConfig, LossConfig, ModelConfig, OptimizerConfig,
                             ScheduleConfig, TrainConfig)
from flaxnets.models.efficientnet import SCALING
from flaxnets.models.registry import IMAGENET_MEAN, IMAGENET_STD
from flaxnets.recipes._references import TPU_BUILDER, TPU_MAIN, TPU_MODEL, TPU_PREPROCESSING, TPU_UTILS

#: The eval crop's padding: size / (size + 32) (preprocessing.py CROP_PADDING, at 80c0773).
CROP_PADDING = 32
#: efficientnet_params' row of each variant in efficientnet_builder.py.
_PARAMS_LINE = {f"b{i}": 39 + i for i in range(8)}


def efficientnet_tpu_sources(variant: str) -> dict[str, str]:
    """SOURCES of the TF-TPU recipe for `variant` ("b0".."b7")."""
    row = f"{TPU_BUILDER}:{_PARAMS_LINE[variant]} (efficientnet_params)"
    return {
        "model.name": row,
        "model.bn_momentum": f"{TPU_BUILDER}:187",
        "model.bn_epsilon": f"{TPU_BUILDER}:188",
        "model.dropout_rate": row,
        "model.stochastic_depth_rate": f"{TPU_BUILDER}:183 (survival_prob 0.8, scaled by block index)",
        "model.kernel_init": f"{TPU_MODEL}:61-103 (conv_kernel_initializer, dense_kernel_initializer)",
        "model.activation": f"{TPU_MODEL} (swish throughout: the table's own activation, so none replaced)",
        "model.bn_group_size": (f"{TPU_UTILS}:147-151 (per replica up to 8 shards) with {TPU_MAIN}:128 (batch 2048) "
                                "on 8 cores: 256 (see recipes/_efficientnet_tpu.py)"),
        "model.bn_moving_variance": (f"{TPU_BUILDER} efficientnet (batch_norm=utils.TpuBatchNormalization) -> "
                                     f"{TPU_UTILS}:141-163 (TpuBatchNormalization: __init__ refuses fused=True, _moments "
                                     "(tf.nn.moments, then E[x^2] - E[x]^2 over replica groups): the biased variance, "
                                     "which the unfused Keras path moves the moving variance towards)"),
        "model.dtype": f"{TPU_MAIN}:221 (use_bfloat16 default True; the seed's best run used float32)",
        "data.image_size": row,
        "data.crop": f"{TPU_PREPROCESSING}:96-113 (_decode_and_random_crop, centre-crop fallback)",
        "data.crop_area_range": f"{TPU_PREPROCESSING}:104",
        "data.crop_aspect_range": f"{TPU_PREPROCESSING}:103",
        "data.flip": f"{TPU_PREPROCESSING}:140-143 (_flip)",
        "data.eval_crop_fraction": (f"{TPU_PREPROCESSING}:26,125 at 80c0773 (CROP_PADDING 32: size / (size + 32)); "
                                    "since 22d5cab (2021) the reference uses 0.875"),
        "data.interpolation": f"{TPU_PREPROCESSING}:88-93 (resize_bicubic, train and eval)",
        "data.mean": f"{TPU_MAIN}:381-382 -> {TPU_BUILDER}:31 (MEAN_RGB)",
        "data.std": f"{TPU_MAIN}:381-382 -> {TPU_BUILDER}:32 (STDDEV_RGB)",
        "data.augment": f"{TPU_MAIN}:98 (augment_name default None)",
        "data.num_train_examples": f"{TPU_MAIN}:139",
        "optimizer.name": f"{TPU_MAIN}:284 (rmsprop) -> {TPU_UTILS}:98-101 (tf.train.RMSPropOptimizer)",
        "optimizer.decay": f"{TPU_UTILS}:85",
        "optimizer.momentum": f"{TPU_UTILS}:87",
        "optimizer.eps": f"{TPU_UTILS}:86",
        "optimizer.initial_scale": f"{TPU_UTILS}:100 (tf.train.RMSPropOptimizer starts its rms at 1.0)",
        "optimizer.weight_decay": f"{TPU_MAIN}:420-422 (L2 in the loss, no decoupled decay)",
        "optimizer.l2": f"{TPU_MAIN}:246 and :420-422 (weight_decay * l2_loss: gradient 1e-5 * w)",
        "optimizer.l2_exclude": f"{TPU_MAIN}:421-422 (all trainable variables but batch_normalization's)",
        "schedule.name": f"{TPU_MAIN}:289 (lr_schedule exponential)",
        "schedule.base_lr": f"{TPU_MAIN}:235-237",
        "schedule.reference_batch": f"{TPU_MAIN}:437 (base_learning_rate * batch / 256)",
        "schedule.warmup_epochs": f"{TPU_MAIN}:295",
        "schedule.warmup_start_lr": f"{TPU_UTILS}:75-77 (initial_lr * step / warmup_steps)",
        "schedule.warmup_target": f"{TPU_UTILS}:72-78 (the ramp reaches the peak and replaces the decayed lr)",
        "schedule.decay_epochs": f"{TPU_MAIN}:239",
        "schedule.decay_rate": f"{TPU_MAIN}:292",
        "schedule.staircase": f"{TPU_UTILS}:48-49",
        "schedule.steps_per_epoch_mode": f"{TPU_MAIN}:709 (num_train_images / train_batch_size, a real number)",
        "loss.label_smoothing": f"{TPU_MAIN}:250",
        "train.global_batch_size": f"{TPU_MAIN}:128",
        "train.epochs": f"{TPU_MAIN}:118-121 (218,949 steps, 'approximately 350 epochs at batch size 2048')",
        "ema.decay": f"{TPU_MAIN}:242",
        "ema.include_batch_stats": f"{TPU_UTILS}:339-346 (get_ema_vars adds BatchNorm moving mean and variance)",
        "ema.dynamic_decay": f"{TPU_MAIN}:426-427 (ExponentialMovingAverage(num_updates=global_step))",
    }


def efficientnet_tpu_config(variant: str) -> Config:
    """The TF-TPU reference recipe for one variant, at batch 2048 for 350 epochs."""
    _, _, size, dropout = SCALING[variant]
    return Config(
        name=f"efficientnet_{variant}_tpu",
        source="tensorflow/tpu models/official/efficientnet (main.py, utils.py, efficientnet_builder.py)",
        model=ModelConfig(name=f"efficientnet_{variant}", bn_momentum=0.99, bn_epsilon=1e-3, dropout_rate=dropout,
                          stochastic_depth_rate=0.2, kernel_init="tf_tpu", activation=None, dtype="bfloat16",
                          bn_group_size=256, bn_moving_variance="biased"),
        data=DataConfig(image_size=size, crop="tf_tpu", crop_area_range=(0.08, 1.0),
                        crop_aspect_range=(0.75, 4.0 / 3.0), flip=True, eval_crop_fraction=size / (size + CROP_PADDING),
                        interpolation="bicubic", mean=IMAGENET_MEAN, std=IMAGENET_STD, augment="none",
                        num_train_examples=1_281_167),
        optimizer=OptimizerConfig(name="rmsprop", decay=0.9, momentum=0.9, eps=1e-3,
                                  initial_scale=1.0, weight_decay=0.0, l2=1e-5,
                                  l2_exclude=("bn_scale", "bn_bias")),
        schedule=ScheduleConfig(name="exponential", base_lr=0.016, reference_batch=256, warmup_epochs=5,
                                warmup_start_lr=0.0, warmup_target="peak", decay_epochs=2.4, decay_rate=0.97,
                                staircase=True, steps_per_epoch_mode="real"),
        loss=LossConfig(label_smoothing=0.1),
        train=TrainConfig(global_batch_size=2048, epochs=350),
        ema=EmaConfig(decay=0.9999, include_batch_stats=True, dynamic_decay=True),
        notes="The seed's best run of B0 trained in float32 (--set model.dtype=float32): 76.04% vs 75.80% bfloat16.",
    )

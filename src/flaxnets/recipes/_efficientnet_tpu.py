"""Shared body of the TF-TPU EfficientNet recipes (B0..B7)."""

from flaxnets.config import (Config, DataConfig, EmaConfig, LossConfig, ModelConfig, OptimizerConfig,
                             ScheduleConfig, TrainConfig)

#: Per variant: (resolution, dropout rate) as in the reference's efficientnet_params.
VARIANTS = {
    "b0": (224, 0.2), "b1": (240, 0.2), "b2": (260, 0.3), "b3": (300, 0.3),
    "b4": (380, 0.4), "b5": (456, 0.4), "b6": (528, 0.5), "b7": (600, 0.5),
}


def efficientnet_tpu_config(variant: str) -> Config:
    """The TF-TPU reference recipe for one variant, at batch 2048 for 350 epochs."""
    size, dropout = VARIANTS[variant]
    return Config(
        name=f"efficientnet_{variant}_tpu",
        source="tensorflow/tpu models/official/efficientnet (main.py, utils.py, efficientnet_builder.py)",
        model=ModelConfig(name=f"efficientnet_{variant}", bn_momentum=0.99, bn_epsilon=1e-3, dropout_rate=dropout,
                          stochastic_depth_rate=0.2, kernel_init="tf_tpu", activation=None, dtype="bfloat16",
                          bn_group_size=None),
        data=DataConfig(image_size=size, crop="tf_tpu", crop_area_range=(0.08, 1.0),
                        crop_aspect_range=(0.75, 4.0 / 3.0), eval_crop_fraction=size / (size + 32),
                        interpolation="bicubic", augment="none", num_train_examples=1_281_167),
        optimizer=OptimizerConfig(name="rmsprop_tf", rmsprop_decay=0.9, rmsprop_momentum=0.9, rmsprop_eps=1e-3,
                                  rmsprop_initial_accumulator=1.0, l2=1e-5, l2_exclude=("bn_scale", "bn_bias")),
        schedule=ScheduleConfig(name="exponential", base_lr=0.016, reference_batch=256, warmup_epochs=5,
                                warmup_start_lr=0.0, warmup_target="peak", decay_epochs=2.4, decay_rate=0.97,
                                staircase=True, steps_per_epoch_mode="real"),
        loss=LossConfig(label_smoothing=0.1),
        train=TrainConfig(global_batch_size=2048, epochs=350),
        ema=EmaConfig(decay=0.9999, include_batch_stats=True, dynamic_decay=True),
        notes=("The reference computes BatchNorm statistics per TPU core (per-core batch 128-256); "
               "--set model.bn_group_size=256 reproduces that at batch 2048 on 8 devices. "
               "The seed's best run trained in float32 (--set model.dtype=float32)."),
    )

"""MobileNet v3 Large trained with the MobileNet v4 Conv-M setup: RandAugment, AdamW, 500 epochs.

Source: Qin et al., "MobileNetV4" (2024) Table 10 and tensorflow/models
official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml
(RandAugment 2 layers, magnitude 15, cutout_const 20, translate_const 10, prob_to_apply 0.7,
excluding Cutout; AdamW eps 1e-7, weight decay 0.1 on all but BatchNorm; cosine from 0.004 over
156,000 steps with a 1,560-step linear warmup; batch 4096). No source reports this model with
this setup; the seed write-up's fourth run reached 73.31% top-1 / 91.13% top-5 at 500 epochs with
weight decay 0.01 (`--set optimizer.weight_decay=0.01` reproduces that run).

Command:
    flaxnets train --recipe mobilenet_v3_large_mnv4_setup --data /data/imagenet --workdir runs/mnv3l_mnv4
"""

from flaxnets.config import (Config, DataConfig, EmaConfig, LossConfig, ModelConfig, OptimizerConfig,
                             ScheduleConfig, TrainConfig)

PUBLISHED_TOP1 = None


def get_config() -> Config:
    """The recipe's configuration."""
    return Config(
        name="mobilenet_v3_large_mnv4_setup",
        source="TF-Vision imagenet_mobilenetv4_conv_medium_tpu.yaml applied to MobileNet v3 Large",
        model=ModelConfig(name="mobilenet_v3_large", bn_momentum=0.997, bn_epsilon=1e-3, dropout_rate=0.2,
                          stochastic_depth_rate=0.0, kernel_init="tf_vision", dtype="bfloat16"),
        data=DataConfig(image_size=224, crop="tf_vision", augment="randaugment", randaugment_num_layers=2,
                        randaugment_magnitude=15, randaugment_magnitude_std=0.0, randaugment_prob_to_apply=0.7,
                        randaugment_exclude_ops=("Cutout",), cutout_const=20, translate_const=10,
                        num_train_examples=1_281_167),
        optimizer=OptimizerConfig(name="adamw", b1=0.9, b2=0.999, eps=1e-7, adam_epsilon_hat=True,
                                  weight_decay=0.1, weight_decay_exclude=("bn_scale", "bn_bias")),
        schedule=ScheduleConfig(name="cosine", base_lr=0.004, reference_batch=4096, warmup_epochs=5,
                                warmup_start_lr=0.0, warmup_target="schedule", alpha=0.0,
                                steps_per_epoch_mode="floor"),
        loss=LossConfig(label_smoothing=0.1),
        train=TrainConfig(global_batch_size=4096, epochs=500),
        ema=EmaConfig(decay=None),
    )

"""MobileNet v3 Small, TF-Vision Model Garden recipe: RMSProp, exponential decay, 1000 epochs.

Source: tensorflow/models official/vision/configs/experiments/image_classification/
imagenet_mobilenetv3small_tpu.yaml ("67.5% top-1 and 87.6% top-5").
lr = 0.01 x 0.99^floor(step / 936) with a linear warmup from 0.001 over the first 1,560 steps up
to the schedule's value at step 1,560 (TF-Vision LinearWarmup); EMA 0.9999 over all weights
including BatchNorm statistics, with TF-Vision's dynamic decay.

Command:
    flaxnets train --recipe mobilenet_v3_small_tfvision --data /data/imagenet --workdir runs/mnv3s_tfvision

Notes: TF-Vision builds Keras' legacy RMSprop, whose mean-square accumulator starts at 0 (TF1's
starts at 1.0); eps 0.002 inside the square root. `l2_weight_decay: 1e-5` becomes Keras
l2(1e-5 / 2) kernel regularisers, i.e. 1e-5 * w in the gradient of conv and dense kernels only
(no bias, BatchNorm or depthwise regulariser in the TF-Vision MobileNet blocks).
"""

from flaxnets.config import (Config, DataConfig, EmaConfig, LossConfig, ModelConfig, OptimizerConfig,
                             ScheduleConfig, TrainConfig)

PUBLISHED_TOP1 = 67.5


def get_config() -> Config:
    """The recipe's configuration."""
    return Config(
        name="mobilenet_v3_small_tfvision",
        source="TF-Vision imagenet_mobilenetv3small_tpu.yaml",
        model=ModelConfig(name="mobilenet_v3_small", bn_momentum=0.997, bn_epsilon=1e-3, dropout_rate=0.2,
                          stochastic_depth_rate=0.0, kernel_init="tf_vision", dtype="bfloat16"),
        data=DataConfig(image_size=224, crop="tf_vision", augment="none", num_train_examples=1_281_167),
        optimizer=OptimizerConfig(name="rmsprop_tf", rmsprop_decay=0.9, rmsprop_momentum=0.9, rmsprop_eps=0.002,
                                  rmsprop_initial_accumulator=0.0, l2=1e-5,
                                  l2_exclude=("bn_scale", "bn_bias", "bias", "depthwise_kernel")),
        schedule=ScheduleConfig(name="exponential", base_lr=0.01, reference_batch=4096, warmup_epochs=5,
                                warmup_start_lr=0.001, warmup_target="schedule", decay_epochs=3,
                                decay_rate=0.99, staircase=True, steps_per_epoch_mode="floor"),
        loss=LossConfig(label_smoothing=0.1),
        train=TrainConfig(global_batch_size=4096, epochs=1000),
        ema=EmaConfig(decay=0.9999, include_batch_stats=True, dynamic_decay=True),
    )

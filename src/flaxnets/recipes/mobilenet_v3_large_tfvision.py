"""MobileNet v3 Large, TF-Vision Model Garden recipe: AdamW + AutoAugment, 700 epochs at batch 4096.

Source: tensorflow/models official/vision/configs/experiments/image_classification/
imagenet_mobilenetv3large_tpu.yaml ("~75.7% top-1"); the AdamW is TF-Vision's AdamWeightDecay
(decay `lr * 0.1 * w`, every parameter except BatchNorm's, no gradient clipping). The seed run of
this recipe in JAX reached 74.42%.

Command:
    flaxnets train --recipe mobilenet_v3_large_tfvision --data /data/imagenet --workdir runs/mnv3l_tfvision
    # on hardware that cannot hold 4096: --set train.grad_accum_steps=4 (4 x 1024 per step)

Notes: the yaml runs 218,000 steps ("700 epochs"; 700 x 312 would be 218,400), so the run and the
cosine last 218000/312 epochs. No EMA (a seed run with EMA 0.9999 reached only 61.5%).
"""

from flaxnets.config import (Config, DataConfig, EmaConfig, LossConfig, ModelConfig, OptimizerConfig,
                             ScheduleConfig, TrainConfig)

PUBLISHED_TOP1 = 75.7


def get_config() -> Config:
    """The recipe's configuration."""
    return Config(
        name="mobilenet_v3_large_tfvision",
        source="TF-Vision imagenet_mobilenetv3large_tpu.yaml",
        model=ModelConfig(name="mobilenet_v3_large", bn_momentum=0.997, bn_epsilon=1e-3, dropout_rate=0.2,
                          stochastic_depth_rate=0.0, kernel_init="tf_vision", dtype="bfloat16"),
        data=DataConfig(image_size=224, crop="tf_vision", augment="autoaugment", autoaugment_policy="v0",
                        cutout_const=100, translate_const=250, num_train_examples=1_281_167),
        optimizer=OptimizerConfig(name="adamw", b1=0.9, b2=0.999, eps=1e-7, adam_epsilon_hat=True,
                                  weight_decay=0.1, weight_decay_exclude=("bn_scale", "bn_bias"),
                                  l2=0.0, grad_clip_norm=None),
        schedule=ScheduleConfig(name="cosine", base_lr=0.004, reference_batch=4096, warmup_epochs=0,
                                alpha=0.0, steps_per_epoch_mode="floor"),
        loss=LossConfig(label_smoothing=0.1),
        train=TrainConfig(global_batch_size=4096, epochs=218_000 / 312),
        ema=EmaConfig(decay=None),
    )

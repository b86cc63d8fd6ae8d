"""Shared body of the MobileNet v3 paper recipes (Large and Small)."""

from flaxnets.config import (Config, DataConfig, EmaConfig, LossConfig, ModelConfig, OptimizerConfig,
                             ScheduleConfig, TrainConfig)


def paper_config(name: str, model: str, source: str) -> Config:
    """RMSProp (TF1) 0.9/0.9/eps 0.002, 0.99 every 3 epochs from step 0 with a 5-epoch warmup to the
    peak 0.02 x batch / 192, L2 1e-5, label smoothing 0.1, dropout 0.2, EMA 0.9999 with BN
    statistics, batch 4096, 1000 epochs, bfloat16."""
    return Config(
        name=name,
        source=source,
        model=ModelConfig(name=model, bn_momentum=0.997, bn_epsilon=1e-3, dropout_rate=0.2,
                          stochastic_depth_rate=0.0, kernel_init="tf_tpu", dtype="bfloat16"),
        data=DataConfig(image_size=224, crop="tf_tpu", augment="none", num_train_examples=1_281_167),
        optimizer=OptimizerConfig(name="rmsprop_tf", rmsprop_decay=0.9, rmsprop_momentum=0.9, rmsprop_eps=0.002,
                                  rmsprop_initial_accumulator=1.0, l2=1e-5, l2_exclude=("bn_scale", "bn_bias")),
        schedule=ScheduleConfig(name="exponential", base_lr=0.02, reference_batch=192, warmup_epochs=5,
                                warmup_start_lr=0.0, warmup_target="peak", decay_epochs=3, decay_rate=0.99,
                                staircase=True, steps_per_epoch_mode="floor"),
        loss=LossConfig(label_smoothing=0.1),
        train=TrainConfig(global_batch_size=4096, epochs=1000),
        ema=EmaConfig(decay=0.9999, include_batch_stats=True, dynamic_decay=True),
    )

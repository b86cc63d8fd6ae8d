"""MobileNet v3 Small on scikit-learn's 8x8 digits exported as 32x32 images: the `make demo` job.

Source: this project (no published figure). 1,797 images in 10 classes, exported as a folder of
class folders by the demo command; meant to reach >= 95% held-out top-1 within minutes on 2 CPU
cores.

Command:
    flaxnets demo
"""

from flaxnets.config import (CheckpointConfig, Config, DataConfig, EmaConfig, EvalConfig, LogConfig,
                             LossConfig, ModelConfig, OptimizerConfig, ScheduleConfig, TrainConfig)
from flaxnets.models.registry import INCEPTION_MEAN, INCEPTION_STD

PUBLISHED_TOP1 = None

OURS = "ours: the demo's own choice"
#: Where each value comes from: dotted config key (as for --set) -> citation.
SOURCES = {
    "model.name": "ours: the smallest zoo model, trains in minutes on 2 CPU cores",
    "model.num_classes": "ours: the ten digit classes",
    "model.bn_momentum": "ours: 0.9, so the running statistics settle within a short run",
    "model.bn_epsilon": "ours: the model default (1e-3)",
    "model.dropout_rate": OURS,
    "model.stochastic_depth_rate": OURS,
    "model.bn_group_size": "ours: statistics over the whole (small) batch",
    "model.bn_moving_variance": "ours: flaxnets' default (the biased variance the batch is normalised with)",
    "model.dtype": "ours: float32 (CPU)",
    "data.image_size": "ours: the 8x8 digits exported as 32x32 images",
    "data.crop": OURS,
    "data.crop_area_range": "ours: digits are centred and small, so only mild crops",
    "data.flip": "ours: no flips (a mirrored 3 is not a 3)",
    "data.eval_crop_fraction": "ours: the whole 32x32 image",
    "data.interpolation": OURS,
    "data.mean": "ours: [-1, 1]",
    "data.std": "ours: [-1, 1]",
    "data.num_train_examples": "ours: count the exported folder",
    "optimizer.name": OURS,
    "optimizer.weight_decay": OURS,
    "optimizer.weight_decay_exclude": OURS,
    "schedule.name": OURS,
    "schedule.base_lr": OURS,
    "schedule.reference_batch": OURS,
    "schedule.warmup_epochs": OURS,
    "loss.label_smoothing": OURS,
    "train.global_batch_size": OURS,
    "train.epochs": "ours: reaches >= 95% held-out top-1 within minutes on 2 CPU cores",
    "ema.decay": "ours: no EMA (the run is too short for one)",
}


def get_config() -> Config:
    """The recipe's configuration."""
    return Config(
        name="digits_demo",
        source="flaxnets demo",
        model=ModelConfig(name="mobilenet_v3_small", num_classes=10, bn_momentum=0.9, dropout_rate=0.1,
                          stochastic_depth_rate=0.0, dtype="float32"),
        # Digits are centred and small: mild crops only, and no flips (a mirrored 3 is not a 3).
        data=DataConfig(image_size=32, crop="tf_vision", crop_area_range=(0.6, 1.0), flip=False,
                        eval_crop_fraction=1.0, interpolation="bilinear", mean=INCEPTION_MEAN,
                        std=INCEPTION_STD, augment="none", num_train_examples=None, workers=0),
        optimizer=OptimizerConfig(name="adamw", weight_decay=0.01, weight_decay_exclude=("bn_scale", "bn_bias", "bias")),
        schedule=ScheduleConfig(name="warmup_cosine", base_lr=0.004, reference_batch=128, warmup_epochs=2,
                                alpha=0.0),
        loss=LossConfig(label_smoothing=0.0),
        train=TrainConfig(global_batch_size=128, epochs=20),
        ema=EmaConfig(decay=None),
        eval=EvalConfig(every_epochs=5, batch_size=256),
        checkpoint=CheckpointConfig(keep=1, keep_best=True),
        log=LogConfig(every_steps=10),
        seed=0,
    )

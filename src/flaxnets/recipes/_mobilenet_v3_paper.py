"""Shared body of the MobileNet v3 paper recipes (Large and Small): Howard et al., "Searching for
MobileNetV3" (ICCV 2019), section 6.1.1, and, for what that section leaves unstated, named sources.

Section 6.1.1 states: a 4x4 TPU pod, TensorFlow's RMSPropOptimizer with momentum 0.9, learning rate
0.1 at batch 4096 (128 images per chip), "decay rate of 0.01 every 3 epochs" (read as x0.99 per 3
epochs), dropout 0.8 keep (0.2), L2 1e-5, the same image preprocessing as Inception, EMA 0.9999 and
BatchNorm average decay 0.99. Everything else comes from the TF-Vision MobileNet v3 Small yaml (the
published TF-Vision run of the same RMSProp / x0.99-every-3-epochs schedule), TF-slim's MobileNet
training scope (the paper's own code base) or TF1's RMSPropOptimizer, as SOURCES says per key.
"""

from flaxnets.config import (Config, DataConfig, EmaConfig, LossConfig, ModelConfig, OptimizerConfig,
                             ScheduleConfig, TrainConfig)
from flaxnets.models.registry import INCEPTION_MEAN, INCEPTION_STD
from flaxnets.recipes._references import (MNV3_SMALL_YAML, SLIM_INCEPTION, SLIM_MOBILENET, TFV_EMA,
                                          TFV_FACTORY, TFV_WARMUP)

PAPER = "paper 6.1.1"
Y = MNV3_SMALL_YAML


def paper_sources(model: str) -> dict[str, str]:
    """SOURCES of a paper recipe for `model` (mobilenet_v3_large or mobilenet_v3_small)."""
    return {
        "model.name": f"paper Table 1 / Table 2 ({model}, width 1.0)",
        "model.bn_momentum": f"{PAPER} (BatchNorm average decay 0.99)",
        "model.bn_epsilon": f"unstated in the paper; {Y}:17",
        "model.dropout_rate": f"{PAPER} (dropout keep 0.8)",
        "model.stochastic_depth_rate": "paper: none mentioned (0)",
        "model.kernel_init": (f"ours: unstated in the paper; its TF-slim code uses a truncated normal with "
                              f"stddev 0.09 ({SLIM_MOBILENET} training_scope), which flaxnets does not offer; "
                              "TF-Vision's MobileNet scheme instead"),
        "model.bn_group_size": f"{PAPER} (4096 on a 4x4 TPU pod: 128 images per chip)",
        "model.bn_moving_variance": (f"unstated in the paper; its TF-slim code ({SLIM_MOBILENET} training_scope) "
                                     "normalises with slim.batch_norm, whose fused path (tf.contrib.layers "
                                     "batch_norm: fused None -> True; _fused_batch_norm) moves the moving variance "
                                     "towards the fused op's Bessel-corrected variance"),
        "model.dtype": f"unstated in the paper; {Y}:4 (bfloat16 on TPU)",
        "data.image_size": "paper section 6 (224 x 224 ImageNet results, Table 3)",
        "data.crop": f"{PAPER} ('the same image preprocessing as Inception'): {SLIM_INCEPTION} preprocess_for_train",
        "data.crop_area_range": f"{SLIM_INCEPTION} distorted_bounding_box_crop (area_range=(0.05, 1.0))",
        "data.crop_aspect_range": f"{SLIM_INCEPTION} distorted_bounding_box_crop (aspect_ratio_range=(0.75, 1.33))",
        "data.flip": f"{SLIM_INCEPTION} preprocess_for_train (random_flip_left_right)",
        "data.eval_crop_fraction": f"{SLIM_INCEPTION} preprocess_for_eval (central_fraction=0.875)",
        "data.interpolation": (f"{SLIM_INCEPTION} preprocess_for_train (fast_mode: bilinear only) and "
                               "preprocess_for_eval (resize_bilinear)"),
        "data.mean": f"{SLIM_INCEPTION} preprocess_for_train / _for_eval ((x - 0.5) * 2: [-1, 1])",
        "data.std": f"{SLIM_INCEPTION} preprocess_for_train / _for_eval ((x - 0.5) * 2: [-1, 1])",
        "data.augment": f"{SLIM_INCEPTION} (colour distortion is part of the inception crop flavour; no policy)",
        "data.inception_fast_mode": (f"{SLIM_INCEPTION} preprocess_image (fast_mode=True by default: bilinear "
                                     "resize only, one colour ordering)"),
        "data.num_train_examples": f"{TFV_FACTORY}:146 (ImageNet-2012 train: 1,281,167)",
        "optimizer.name": f"{PAPER} (TensorFlow RMSPropOptimizer: TF1 semantics)",
        "optimizer.decay": f"unstated in the paper; {Y}:46 (rho 0.9, also TF1's default)",
        "optimizer.momentum": PAPER,
        "optimizer.eps": f"unstated in the paper; {Y}:48 (TF1's default 1e-10 is far smaller)",
        "optimizer.initial_scale": f"{PAPER} (TF1 RMSPropOptimizer starts its mean square at 1.0)",
        "optimizer.weight_decay": f"{PAPER} (RMSProp with L2, no decoupled decay)",
        "optimizer.l2": f"{PAPER} (l2 weight decay 1e-5)",
        "optimizer.l2_exclude": (f"unstated in the paper; {SLIM_MOBILENET} training_scope (l2 on slim.conv2d "
                                 "weights, the classifier being a 1x1 conv2d there; none on separable/depthwise "
                                 "weights, biases or BatchNorm)"),
        "schedule.name": f"{PAPER} (decay every 3 epochs)",
        "schedule.base_lr": f"{PAPER} (0.1)",
        "schedule.reference_batch": f"{PAPER} (0.1 at batch 4096)",
        "schedule.decay_epochs": PAPER,
        "schedule.decay_rate": f"{PAPER} ('decay rate of 0.01 every 3 epochs', read as x0.99)",
        "schedule.staircase": f"unstated in the paper; {Y}:55",
        "schedule.warmup_epochs": f"unstated in the paper; {Y}:62 (1,560 steps = 5 x 312)",
        "schedule.warmup_start_lr": f"unstated in the paper; {Y}:63",
        "schedule.warmup_target": f"unstated in the paper; {TFV_WARMUP}:129 (TF-Vision LinearWarmup)",
        "schedule.steps_per_epoch_mode": f"unstated in the paper; {Y}:53 (936 = 3 x floor(1,281,167 / 4096))",
        "loss.label_smoothing": f"unstated in the paper; {Y}:23",
        "train.global_batch_size": PAPER,
        "train.epochs": f"unstated in the paper; {Y}:36 (312,000 steps = 1000 epochs)",
        "ema.decay": PAPER,
        "ema.include_batch_stats": f"unstated in the paper; {Y}:58 (trainable_weights_only false)",
        "ema.dynamic_decay": f"unstated in the paper; {TFV_EMA}:264 (TF-Vision's default)",
    }


def paper_config(name: str, model: str) -> Config:
    """The paper recipe for `model`: RMSProp (TF1) momentum 0.9, lr 0.1 at 4096 x 0.99 every 3 epochs,
    dropout 0.2, L2 1e-5, EMA 0.9999, BN momentum 0.99, Inception preprocessing (section 6.1.1);
    eps 0.002, rho 0.9, a 5-epoch warmup from 0.001, label smoothing 0.1 and 1000 epochs from the
    TF-Vision MobileNet v3 Small yaml."""
    return Config(
        name=name,
        source="Howard et al. 2019, section 6.1.1 (unstated values: TF-Vision imagenet_mobilenetv3small_tpu.yaml)",
        model=ModelConfig(name=model, bn_momentum=0.99, bn_epsilon=1e-3, dropout_rate=0.2,
                          stochastic_depth_rate=0.0, kernel_init="tf_vision", dtype="bfloat16", bn_group_size=128,
                          bn_moving_variance="unbiased"),
        data=DataConfig(image_size=224, crop="inception", crop_area_range=(0.05, 1.0), crop_aspect_range=(0.75, 1.33),
                        flip=True, eval_crop_fraction=0.875, interpolation="bilinear", mean=INCEPTION_MEAN,
                        std=INCEPTION_STD, augment="none", num_train_examples=1_281_167),
        optimizer=OptimizerConfig(name="rmsprop", decay=0.9, momentum=0.9, eps=0.002,
                                  initial_scale=1.0, weight_decay=0.0, l2=1e-5,
                                  l2_exclude=("bn_scale", "bn_bias", "bias", "depthwise_kernel")),
        schedule=ScheduleConfig(name="exponential", base_lr=0.1, reference_batch=4096, warmup_epochs=5,
                                warmup_start_lr=0.001, warmup_target="schedule", decay_epochs=3, decay_rate=0.99,
                                staircase=True, steps_per_epoch_mode="floor"),
        loss=LossConfig(label_smoothing=0.1),
        train=TrainConfig(global_batch_size=4096, epochs=1000),
        ema=EmaConfig(decay=0.9999, include_batch_stats=True, dynamic_decay=True),
    )

"""Shared body of the google/automl EfficientNetV2 recipes (B0-B3, S, M, L): hparams.py
`base_config`, effnetv2_configs.py `efficientnetv2_params` / `efficientnetv2_config`, main.py
(the TPUEstimator training script and its progressive stages), utils.py, datasets.py,
preprocessing.py and preprocess_legacy.py, at 6a54c87.

Per-variant sizes, dropout, RandAugment magnitude and Mixup / CutMix alpha are the reference's
table; the sizes and dropout are read from the model family (`flaxnets.models.efficientnetv2.VARIANTS`),
the regularisation from `REGULARISATION` below.

What flaxnets cannot express exactly (docs/RECIPES.md prints this with each recipe):
- With both alphas set (M, L) the reference mixes half of every batch with Mixup and half with
  CutMix (datasets.py `mixing`); flaxnets mixes a whole batch one way, CutMix with probability
  data.mix_switch_prob 0.5.
- S/M/L training crops with `sample_distorted_bounding_box` and no fallback crop (preprocessing.py
  `preprocess_for_train`); flaxnets' tf_vision crop with the same area and aspect ranges falls
  back to a centre crop after its attempts. S/M/L evaluation resizes the whole image at 320 pixels
  or more without a crop (`preprocess_for_eval`); tf_vision with crop fraction 1.0 takes the
  centred square of the shorter side first.
- RandAugment and AutoAugment are flaxnets' (TF-Vision's `official.vision.ops.augment`); the
  reference's autoaugment.py is TF-TPU's copy of the same policies.
- BatchNorm statistics are per TPU replica in the reference (main.py: bn_type 'tpu_bn' on TPU)
  on a slice it does not state; the recipe takes them over the whole batch (model.bn_group_size).
"""

from flaxnets.config import (Config, DataConfig, EmaConfig, LossConfig, ModelConfig, OptimizerConfig,
                             ProgressiveConfig, ScheduleConfig, TrainConfig)
from flaxnets.models.efficientnetv2 import VARIANTS
from flaxnets.models.registry import IMAGENET_MEAN, IMAGENET_STD
from flaxnets.recipes._references import (
    AUTOML_CONFIGS, AUTOML_DATASETS, AUTOML_HPARAMS, AUTOML_LEGACY, AUTOML_MAIN, AUTOML_PREPROCESSING,
    AUTOML_UTILS,
)

#: effnetv2_configs.py `efficientnetv2_params` (lines 192-210): the final RandAugment magnitude
#: and Mixup / CutMix alpha of each variant, and its augmentation (B0-B3 EfficientNet-V1's
#: AutoAugment pipeline, for comparison with EfficientNet).
REGULARISATION = {"b0": (0, 0.0, "effnetv1_autoaug"), "b1": (0, 0.0, "effnetv1_autoaug"),
                  "b2": (0, 0.0, "effnetv1_autoaug"), "b3": (0, 0.0, "effnetv1_autoaug"),
                  "s": (10, 0.0, "randaug"), "m": (15, 0.2, "randaug"), "l": (20, 0.5, "randaug")}
#: efficientnetv2_params' line of each variant.
_PARAMS_LINE = {"s": 192, "m": 194, "l": 196, "b0": 203, "b1": 205, "b2": 207, "b3": 209}
#: The training split: ImageNet's train files less the 25,021 images of minival (datasets.py:85).
NUM_TRAIN = 1_256_144


def efficientnetv2_automl_sources(variant: str) -> dict[str, str]:
    """SOURCES of the automl recipe for `variant` ("b0".."b3", "s", "m", "l")."""
    row = f"{AUTOML_CONFIGS}:{_PARAMS_LINE[variant]} (efficientnetv2_params)"
    legacy = variant.startswith("b")
    magnitude, mix, _ = REGULARISATION[variant]
    out = {
        "model.name": row,
        "model.bn_momentum": f"{AUTOML_HPARAMS}:228",
        "model.bn_epsilon": f"{AUTOML_HPARAMS}:229",
        "model.dropout_rate": f"{row} (fixed: {AUTOML_MAIN}:459-463 computes dp_list and deletes it, :481 is commented out)",
        "model.stochastic_depth_rate": f"{AUTOML_HPARAMS}:234 (survival_prob 0.8, scaled by block index)",
        "model.bn_group_size": ("ours: statistics over the whole batch; the reference's are per TPU replica "
                                f"({AUTOML_MAIN}:78-79, bn_type tpu_bn) on a slice it does not state"),
        "model.bn_moving_variance": f"{AUTOML_UTILS}:173 (TpuBatchNormalization: tf.nn.moments per replica, biased)",
        "model.dtype": f"{AUTOML_HPARAMS}:306 (mixed_precision True: bfloat16 on TPU)",
        "data.image_size": f"{row} (eval_size; training sizes are progressive.*)",
        "data.flip": f"{AUTOML_LEGACY}:130-132 (_flip)" if legacy else f"{AUTOML_PREPROCESSING}:43-44 (random_flip_left_right)",
        "data.num_train_examples": f"{AUTOML_DATASETS}:85 (train split: ImageNet train less minival)",
        "optimizer.name": f"{AUTOML_HPARAMS}:249 (rmsprop) -> {AUTOML_UTILS}:161-163 (tf.compat.v1.train.RMSPropOptimizer)",
        "optimizer.decay": f"{AUTOML_UTILS}:148",
        "optimizer.eps": f"{AUTOML_UTILS}:149",
        "optimizer.momentum": f"{AUTOML_UTILS}:150",
        "optimizer.initial_scale": f"{AUTOML_UTILS}:162 (tf.compat.v1.train.RMSPropOptimizer starts its rms at 1.0)",
        "optimizer.weight_decay": f"{AUTOML_MAIN}:134-138 (L2 in the loss, no decoupled decay)",
        "optimizer.l2": f"{AUTOML_HPARAMS}:257 with {AUTOML_MAIN}:135 (weight_decay * l2_loss: gradient 1e-5 * w)",
        "optimizer.l2_exclude": f"{AUTOML_HPARAMS}:259 (weight_decay_exclude '.*(bias|gamma|beta).*')",
        "schedule.name": f"{AUTOML_HPARAMS}:250 (lr_sched exponential) -> {AUTOML_UTILS}:102-107 (staircase)",
        "schedule.base_lr": f"{AUTOML_HPARAMS}:251",
        "schedule.reference_batch": f"{AUTOML_MAIN}:157 (lr_base * batch_size / 256)",
        "schedule.warmup_epochs": f"{AUTOML_HPARAMS}:254",
        "schedule.warmup_start_lr": f"{AUTOML_UTILS}:124-129 (initial_lr * step / warmup_steps)",
        "schedule.warmup_target": f"{AUTOML_UTILS}:124-129 (the ramp reaches the peak and replaces the decayed lr)",
        "schedule.decay_epochs": f"{AUTOML_HPARAMS}:252",
        "schedule.decay_rate": f"{AUTOML_HPARAMS}:253",
        "schedule.staircase": f"{AUTOML_UTILS}:106",
        "schedule.steps_per_epoch_mode": f"{AUTOML_MAIN}:364 (num_train_images / batch_size, a real number)",
        "loss.label_smoothing": f"{AUTOML_HPARAMS}:260",
        "train.global_batch_size": f"{AUTOML_HPARAMS}:262",
        "train.epochs": f"{AUTOML_HPARAMS}:247",
        "ema.decay": f"{AUTOML_HPARAMS}:256",
        "ema.include_batch_stats": f"{AUTOML_UTILS}:281-289 (get_ema_vars adds BatchNorm moving mean and variance)",
        "ema.dynamic_decay": f"{AUTOML_MAIN}:145-146 (ExponentialMovingAverage(num_updates=global_step))",
        "progressive.stages": f"{AUTOML_CONFIGS}:227 (train stages=4, sched=True) -> {AUTOML_MAIN}:470-474",
        "progressive.base_image_size": f"{AUTOML_HPARAMS}:284 (data.ibase) -> {AUTOML_MAIN}:468",
        "progressive.final_image_size": f"{row} (train_size = train.isize) -> {AUTOML_MAIN}:474",
    }
    if legacy:
        out.update({
            "data.crop": f"{AUTOML_PREPROCESSING}:133-138 (effnetv1_ -> preprocess_legacy) -> {AUTOML_LEGACY}:90-113",
            "data.crop_area_range": f"{AUTOML_LEGACY}:96",
            "data.crop_aspect_range": f"{AUTOML_LEGACY}:95",
            "data.eval_crop_fraction": f"{AUTOML_LEGACY}:117 (_decode_and_center_crop: size / (size + 32))",
            "data.interpolation": f"{AUTOML_LEGACY}:84-85 (resize_bicubic)",
            "data.mean": f"{AUTOML_PREPROCESSING}:135 (legacy difference (1): mean/stddev) -> ImageNet MEAN_RGB",
            "data.std": f"{AUTOML_PREPROCESSING}:135 (legacy difference (1): mean/stddev) -> ImageNet STDDEV_RGB",
            "data.augment": f"{row} (effnetv1_autoaug) -> {AUTOML_LEGACY}:173 (AutoAugment 'v0')",
        })
    else:
        out.update({
            "data.crop": f"{AUTOML_PREPROCESSING}:31-41 (sample_distorted_bounding_box, resize)",
            "data.crop_area_range": f"{AUTOML_PREPROCESSING}:35",
            "data.crop_aspect_range": f"{AUTOML_PREPROCESSING}:32 (sample_distorted_bounding_box default 0.75,1.33)",
            "data.eval_crop_fraction": f"{AUTOML_PREPROCESSING}:58-61 (no crop at eval sizes of 320 or more)",
            "data.interpolation": f"{AUTOML_PREPROCESSING}:41 (tf.image.resize default: bilinear)",
            "data.mean": "flaxnets.models.efficientnetv2 (the family's (x - 128) / 128)",
            "data.std": "flaxnets.models.efficientnetv2 (the family's (x - 128) / 128)",
            "data.augment": f"{row} (randaug)",
            "data.randaugment_num_layers": f"{AUTOML_HPARAMS}:280 (ra_num_layers)",
            "data.randaugment_magnitude": f"{row} (ram {magnitude}: the last stage's)",
            "progressive.randaugment_magnitude": f"{AUTOML_MAIN}:464 (np.linspace(5, ram, stages))",
        })
    if mix:
        out.update({
            "data.mixup_alpha": f"{row} (mixup_alpha {mix}: the last stage's)",
            "data.cutmix_alpha": f"{row} (cutmix_alpha {mix}: the last stage's)",
            "data.mix_switch_prob": (f"ours: the reference mixes half of each batch each way ({AUTOML_DATASETS}:287-293); "
                                     "here a whole batch, CutMix with probability 0.5"),
            "progressive.mixup_alpha": f"{AUTOML_MAIN}:465 (np.linspace(0, mixup_alpha, stages))",
            "progressive.cutmix_alpha": f"{AUTOML_MAIN}:466 (np.linspace(0, cutmix_alpha, stages))",
        })
    return out


def efficientnetv2_automl_config(variant: str) -> Config:
    """The automl reference recipe for one variant: batch 4096, 350 epochs, 4 progressive stages."""
    _, _, _, train_size, eval_size, dropout = VARIANTS[variant]
    magnitude, mix, _ = REGULARISATION[variant]
    legacy = variant.startswith("b")
    if legacy:
        data = DataConfig(image_size=eval_size, crop="tf_tpu", crop_area_range=(0.08, 1.0),
                          crop_aspect_range=(0.75, 4.0 / 3.0), flip=True,
                          eval_crop_fraction=eval_size / (eval_size + 32), interpolation="bicubic",
                          mean=IMAGENET_MEAN, std=IMAGENET_STD, augment="autoaugment", autoaugment_policy="v0",
                          num_train_examples=NUM_TRAIN)
        progressive = ProgressiveConfig(stages=4, base_image_size=128, final_image_size=train_size)
    else:
        data = DataConfig(image_size=eval_size, crop="tf_vision", crop_area_range=(0.05, 1.0),
                          crop_aspect_range=(0.75, 1.33), flip=True, eval_crop_fraction=1.0,
                          interpolation="bilinear", mean=(128.0,) * 3, std=(128.0,) * 3, augment="randaugment",
                          randaugment_num_layers=2, randaugment_magnitude=float(magnitude), mixup_alpha=mix,
                          cutmix_alpha=mix, mix_switch_prob=0.5, num_train_examples=NUM_TRAIN)
        progressive = ProgressiveConfig(stages=4, base_image_size=128, final_image_size=train_size,
                                        randaugment_magnitude=(5.0, float(magnitude)),
                                        mixup_alpha=(0.0, mix) if mix else None,
                                        cutmix_alpha=(0.0, mix) if mix else None)
    return Config(
        name=f"efficientnetv2_{variant}_automl",
        source="google/automl efficientnetv2 (hparams.py, effnetv2_configs.py, main.py, utils.py, datasets.py)",
        model=ModelConfig(name=f"efficientnetv2_{variant}", bn_momentum=0.9, bn_epsilon=1e-3, dropout_rate=dropout,
                          stochastic_depth_rate=0.2, dtype="bfloat16", bn_group_size=None, bn_moving_variance="biased"),
        data=data,
        optimizer=OptimizerConfig(name="rmsprop", decay=0.9, momentum=0.9, eps=1e-3, initial_scale=1.0,
                                  weight_decay=0.0, l2=1e-5, l2_exclude=("bn_scale", "bn_bias", "bias")),
        schedule=ScheduleConfig(name="exponential", base_lr=0.016, reference_batch=256, warmup_epochs=5,
                                warmup_start_lr=0.0, warmup_target="peak", decay_epochs=2.4, decay_rate=0.97,
                                staircase=True, steps_per_epoch_mode="real"),
        loss=LossConfig(label_smoothing=0.1),
        train=TrainConfig(global_batch_size=4096, epochs=350),
        ema=EmaConfig(decay=0.9999, include_batch_stats=True, dynamic_decay=True),
        progressive=progressive,
        notes=("Progressive learning as automl's main.py: 4 stages from 128 pixels to the training size, "
               "evaluation at the eval size. See flaxnets/recipes/_efficientnetv2_automl.py for what differs."),
    )

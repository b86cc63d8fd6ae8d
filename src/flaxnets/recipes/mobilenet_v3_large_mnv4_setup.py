"""MobileNet v3 Large trained with the MobileNet v4 Conv-M setup: RandAugment, AdamW, 500 epochs.

Source: Qin et al., "MobileNetV4" (2024) Table 10 and tensorflow/models
official/vision/configs/experiments/image_classification/imagenet_mobilenetv4_conv_medium_tpu.yaml,
value for value except the network: 256 px, stochastic depth 0.075, RandAugment 2 layers,
magnitude 15, cutout_const 20, translate_const 10, prob_to_apply 0.7, excluding Cutout; AdamW eps
1e-7, weight decay 0.1 on all but BatchNorm; cosine from 0.004 over 156,000 steps with a 1,560-step
linear warmup; batch 4096; ImageNet mean/std inputs (TF-Vision's classification parser); BatchNorm
per replica (TF-Vision's `use_sync_bn=False` default), 128 per replica assuming 32 replicas at 4096.

No source reports this model with this setup. The seed write-up's fourth run reached 73.31% top-1 /
91.13% top-5 at 500 epochs with weight decay 0.01, at 224 px and without stochastic depth:
`--set optimizer.weight_decay=0.01 data.image_size=224 model.stochastic_depth_rate=0` is that run.

Command:
    flaxnets train --recipe mobilenet_v3_large_mnv4_setup --data /data/imagenet --workdir runs/mnv3l_mnv4
"""

from flaxnets.config import (Config, DataConfig, EmaConfig, LossConfig, ModelConfig, OptimizerConfig,
                             ScheduleConfig, TrainConfig)
from flaxnets.models.registry import IMAGENET_MEAN, IMAGENET_STD
from flaxnets.recipes._references import (MNV4_CONV_M_YAML, TFV_ADAMW, TFV_COMMON, TFV_FACTORY,
                                          tf_vision_sources)

PUBLISHED_TOP1 = None

Y = MNV4_CONV_M_YAML
#: Where each value comes from: dotted config key (as for --set) -> citation.
SOURCES = {
    **tf_vision_sources(Y),
    "model.name": "ours: the point of this recipe is MobileNet v3 Large under the MNv4 Conv-M setup",
    "model.bn_momentum": f"{Y}:17",
    "model.bn_epsilon": f"{Y}:16",
    "model.dropout_rate": f"{Y}:18",
    "model.stochastic_depth_rate": (f"{Y}:13 (TF-Vision scales it as rate * (i + 1) / n over every block "
                                    f"spec, {Y}:12; ours rate * b / n over the blocks)"),
    "model.bn_group_size": (f"{TFV_FACTORY}:81 (use_sync_bn=False; the yaml keeps it); 128 per replica assumes "
                            "32 replicas at 4096"),
    "data.augment": f"{Y}:33 (randaug)",
    "data.randaugment_num_layers": f"{TFV_COMMON}:61 (RandAugment default; the yaml sets none)",
    "data.randaugment_magnitude": f"{Y}:31",
    "data.randaugment_magnitude_std": f"{TFV_COMMON}:65 (default 0.0)",
    "data.randaugment_prob_to_apply": f"{Y}:32",
    "data.randaugment_exclude_ops": f"{Y}:30",
    "data.cutout_const": f"{Y}:29",
    "data.translate_const": f"{TFV_COMMON}:64 (RandAugment default 10; the yaml sets none)",
    "optimizer.name": f"{Y}:59-60 (AdamWeightDecay)",
    "optimizer.b1": f"{TFV_ADAMW}:38-42 (AdamWeightDecay defaults; the yaml sets none)",
    "optimizer.b2": f"{TFV_ADAMW}:38-42 (AdamWeightDecay defaults)",
    "optimizer.eps": f"{TFV_ADAMW}:42 (epsilon=1e-7 default)",
    "optimizer.epsilon_hat": f"{TFV_ADAMW}:51 (AdamWeightDecay is Keras Adam: eps added to sqrt(v_hat))",
    "optimizer.weight_decay": f"{Y}:58 (the seed's fourth run used 0.01)",
    "optimizer.weight_decay_exclude": f"{Y}:56 (exclude_from_weight_decay: batch_normalization)",
    "optimizer.l2": f"{Y}:20",
    "optimizer.grad_clip_norm": f"{Y}:57 (gradient_clip_norm 0.0: none)",
    "schedule.name": f"{Y}:53",
    "schedule.base_lr": f"{Y}:51",
    "schedule.reference_batch": f"{Y}:25 (the yaml's lr is for its batch of 4096)",
    "schedule.warmup_epochs": f"{Y}:63 (1,560 steps = 5 x 312)",
    "schedule.warmup_start_lr": f"{TFV_FACTORY}:424 (the yaml sets no warmup_learning_rate; the factory's 0)",
    "schedule.alpha": f"{Y}:49-52 (CosineDecay alpha default 0.0)",
    "schedule.decay_epochs": f"{Y}:50 (decay_steps = train_steps: the cosine spans the run)",
    "loss.label_smoothing": f"{Y}:21",
    "train.global_batch_size": f"{Y}:25",
    "train.epochs": f"{Y}:41 (156,000 steps = 500 x 312)",
    "ema.decay": f"{Y}:47-65 (no ema in the yaml's optimizer_config)",
}


def get_config() -> Config:
    """The recipe's configuration."""
    return Config(
        name="mobilenet_v3_large_mnv4_setup",
        source="TF-Vision imagenet_mobilenetv4_conv_medium_tpu.yaml applied to MobileNet v3 Large",
        model=ModelConfig(name="mobilenet_v3_large", bn_momentum=0.997, bn_epsilon=1e-3, dropout_rate=0.2,
                          stochastic_depth_rate=0.075, kernel_init="tf_vision", dtype="bfloat16",
                          bn_group_size=128, bn_moving_variance="unbiased"),
        data=DataConfig(image_size=256, crop="tf_vision", crop_area_range=(0.08, 1.0),
                        crop_aspect_range=(0.75, 4.0 / 3.0), flip=True, eval_crop_fraction=0.875,
                        interpolation="bilinear", mean=IMAGENET_MEAN, std=IMAGENET_STD,
                        augment="randaugment", randaugment_num_layers=2, randaugment_magnitude=15,
                        randaugment_magnitude_std=0.0, randaugment_prob_to_apply=0.7,
                        randaugment_exclude_ops=("Cutout",), cutout_const=20, translate_const=10,
                        num_train_examples=1_281_167),
        optimizer=OptimizerConfig(name="adamw", b1=0.9, b2=0.999, eps=1e-7, epsilon_hat=True,
                                  weight_decay=0.1, weight_decay_exclude=("bn_scale", "bn_bias"),
                                  l2=0.0, grad_clip_norm=None),
        schedule=ScheduleConfig(name="cosine", base_lr=0.004, reference_batch=4096, warmup_epochs=5,
                                warmup_start_lr=0.0, warmup_target="schedule", alpha=0.0, decay_epochs=None,
                                steps_per_epoch_mode="floor"),
        loss=LossConfig(label_smoothing=0.1),
        train=TrainConfig(global_batch_size=4096, epochs=500),
        ema=EmaConfig(decay=None),
    )

"""Reference files the recipes cite in their SOURCES, and the versions the line numbers refer to.

Line numbers are those of the versions named in `VERSIONS`; docs/RECIPES.md prints them.
"""

#: Which version of each reference the cited line numbers belong to.
VERSIONS = (
    ("TF-Vision experiment yamls (tensorflow/models "
     "official/vision/configs/experiments/image_classification/)",
     "imagenet_mobilenetv3large_tpu.yaml at 21f44ed, imagenet_mobilenetv3small_tpu.yaml at 0225b13, "
     "imagenet_mobilenetv4_conv_medium_tpu.yaml at 609c573"),
    ("TF-Vision library code (official/vision, official/modeling)", "tf-models-official 2.20.0"),
    ("TF-TPU EfficientNet (tensorflow/tpu models/official/efficientnet/)",
     "7dc921f (2026-03-03); preprocessing.py's CROP_PADDING at 80c0773, before 22d5cab (2021-11-15) "
     "replaced it by CROP_FRACTION 0.875"),
    ("tf-keras (keras-team/tf-keras tf_keras/layers/normalization/batch_normalization.py)", "dd0a723"),
    ("TF-slim (tensorflow/models research/slim/)", "417e1f5; cited by function, whose lines move between versions"),
    ("MobileNetV3 paper", "Howard et al., \"Searching for MobileNetV3\", ICCV 2019; section numbers"),
    ("seed", "the project's seed write-ups of earlier JAX runs (000: MobileNet v3 Large, 001: EfficientNet)"),
    ("google/automl EfficientNetV2 (efficientnetv2/)", "6a54c87"),
)

_EXPERIMENTS = "official/vision/configs/experiments/image_classification/"
#: TF-Vision MobileNet v3 Large / Small and MobileNet v4 Conv-M experiment yamls.
MNV3_LARGE_YAML = _EXPERIMENTS + "imagenet_mobilenetv3large_tpu.yaml"
MNV3_SMALL_YAML = _EXPERIMENTS + "imagenet_mobilenetv3small_tpu.yaml"
MNV4_CONV_M_YAML = _EXPERIMENTS + "imagenet_mobilenetv4_conv_medium_tpu.yaml"
#: TF-Vision's experiment factories (`mobilenet_imagenet` at lines 364-433) and config defaults.
TFV_FACTORY = "official/vision/configs/image_classification.py"
TFV_COMMON = "official/vision/configs/common.py"
TFV_PARSER = "official/vision/dataloaders/classification_input.py"
TFV_PREPROCESS = "official/vision/ops/preprocess_ops.py"
TFV_WARMUP = "official/modeling/optimization/lr_schedule.py"
TFV_OPTIMIZERS = "official/modeling/optimization/optimizer_factory.py"
TFV_ADAMW = "official/modeling/optimization/legacy_adamw.py"
TFV_EMA = "official/modeling/optimization/configs/optimizer_config.py"
TFV_MOBILENET = "official/vision/modeling/backbones/mobilenet.py"
TFV_BACKBONES = "official/vision/configs/backbones.py"

_EFFICIENTNET = "tensorflow/tpu models/official/efficientnet/"
TPU_MAIN = _EFFICIENTNET + "main.py"
TPU_UTILS = _EFFICIENTNET + "utils.py"
TPU_BUILDER = _EFFICIENTNET + "efficientnet_builder.py"
TPU_MODEL = _EFFICIENTNET + "efficientnet_model.py"
TPU_PREPROCESSING = _EFFICIENTNET + "preprocessing.py"

#: tf_keras' BatchNormalization: on 4-D inputs fused (`build`, :356-357), and `_fused_batch_norm`
#: (:896) keeps the fused op's Bessel-corrected variance for the moving average
#: (`_bessels_correction_test_only` True, :243; tensorflow core/kernels/fused_batch_norm_op.cc
#: `rest_size_adjust`).
TF_KERAS_BN = "tf_keras/layers/normalization/batch_normalization.py"
#: Why a TF-Vision recipe's moving variance is the Bessel-corrected one.
TFV_MOVING_VARIANCE = (f"{TFV_MOBILENET} and official/vision/modeling/layers/nn_blocks.py (tf_keras "
                       "BatchNormalization, synchronized=use_sync_bn false) -> "
                       f"{TF_KERAS_BN}:356-357 (build: fused on 4-D inputs) and :896 (_fused_batch_norm keeps "
                       "the fused op's n / (n - 1) variance: _bessels_correction_test_only, :243)")

SLIM_INCEPTION = "research/slim/preprocessing/inception_preprocessing.py"
SLIM_MOBILENET = "research/slim/nets/mobilenet/mobilenet.py"


def tf_vision_sources(yaml: str) -> dict[str, str]:
    """SOURCES every recipe that runs a TF-Vision classification `yaml` shares: the yaml's common
    header lines and what TF-Vision's classification parser and experiment factory fix for all of
    them (crop, flip, eval crop, resize, normalisation, initialisers, the ImageNet epoch)."""
    return {
        "model.num_classes": f"ours: the 1000 ImageNet classes; {yaml}:7 has 1001 (TF's unused background class)",
        "model.kernel_init": (f"{TFV_MOBILENET}:1230 (backbone VarianceScaling); head: {TFV_FACTORY}:85 "
                              "(random_uniform)"),
        "model.bn_moving_variance": TFV_MOVING_VARIANCE,
        "model.dtype": f"{yaml}:4 (mixed_precision_dtype bfloat16)",
        "data.image_size": f"{yaml}:8",
        "data.crop": f"{TFV_PARSER}:200-204 (random_crop_image_v2, centre-crop fallback)",
        "data.crop_area_range": f"{TFV_FACTORY}:41",
        "data.crop_aspect_range": f"{TFV_PREPROCESS}:648 (random_crop_image_v2 default)",
        "data.flip": f"{TFV_FACTORY}:39 (aug_rand_hflip)",
        "data.eval_crop_fraction": f"{TFV_FACTORY}:61 (center_crop_fraction)",
        "data.interpolation": f"{TFV_FACTORY}:63 (tf_resize_method, train and eval)",
        "data.mean": f"{TFV_PARSER}:251-252 -> {TFV_PREPROCESS}:29-32 (MEAN_RGB)",
        "data.std": f"{TFV_PARSER}:251-252 -> {TFV_PREPROCESS}:29-32 (STDDEV_RGB)",
        "data.num_train_examples": f"{TFV_FACTORY}:146 (IMAGENET_TRAIN_EXAMPLES)",
        "schedule.warmup_target": f"{TFV_WARMUP}:129 (LinearWarmup ramps to the schedule's value at its end)",
        "schedule.steps_per_epoch_mode": f"{TFV_FACTORY}:369 (IMAGENET_TRAIN_EXAMPLES // batch)",
    }

_AUTOML = "google/automl efficientnetv2/"
AUTOML_HPARAMS = _AUTOML + "hparams.py"
AUTOML_CONFIGS = _AUTOML + "effnetv2_configs.py"
AUTOML_MAIN = _AUTOML + "main.py"
AUTOML_UTILS = _AUTOML + "utils.py"
AUTOML_DATASETS = _AUTOML + "datasets.py"
AUTOML_PREPROCESSING = _AUTOML + "preprocessing.py"
AUTOML_LEGACY = _AUTOML + "preprocess_legacy.py"
AUTOML_README = _AUTOML + "README.md"

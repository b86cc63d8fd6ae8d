"""The experiment configuration: nested frozen dataclasses, dotted-key overrides, JSON round trip.

A recipe (`flaxnets.recipes.*`) builds a `Config`; `apply_overrides(config, ["a.b=value"])` changes
fields with type checking; `Config.to_dict()` / `Config.from_dict()` store it in a work directory.
Every knob has one field here and one function that reads it:

- `model.*`            -> `flaxnets.models.create_model` (None = the model's own default)
- `data.*`             -> the input pipeline (`flaxnets.data`)
- `optimizer.*`        -> `flaxnets.train.optim.build_optimizer` (the optimizer named from
                          `flaxnets.optimizers.OPTIMIZERS`, with its arguments)
- `schedule.*`         -> `flaxnets.train.schedules.build_schedule` (`flaxnets.optimizers.SCHEDULES`)
- `loss.*`             -> `flaxnets.train.losses.cross_entropy_loss`
- `train/ema/eval/checkpoint/log.*` -> the training loop
- `quant.*`            -> `flaxnets.quant.quantize_for_training` (quantization-aware training)
- `progressive.*`      -> `flaxnets.train.progressive.stage_plan` (progressive learning: the
                          stages' image sizes and regularisation)

Batch vocabulary: `train.global_batch_size` is the number of examples per *optimizer step*,
summed over all devices and all gradient-accumulation micro-steps. The learning-rate scaling and
`steps_per_epoch` refer to it; one micro-step sees `global_batch_size // grad_accum_steps`.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import json
import textwrap
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Optional, Union

from flaxnets.errors import UsageError
from flaxnets.choices import OPTIMIZERS, SCHEDULES

#: Parameter kinds reported by `flaxnets.models.param_kinds`; weight-decay masks select among them.
ParamKind = Literal["conv_kernel", "depthwise_kernel", "dense_kernel", "bias", "bn_scale", "bn_bias",
                    "layer_scale"]
PARAM_KINDS: tuple[str, ...] = typing.get_args(ParamKind)


@dataclass(frozen=True)
class ModelConfig:
    """Which network to build and the overrides passed to `create_model` (None = model default)."""

    #: Registry name (`flaxnets models`).
    name: str = "mobilenet_v3_small"
    #: Classifier outputs.
    num_classes: int = 1000
    #: BatchNorm running-average momentum (TF/Keras convention: new = m * old + (1 - m) * batch).
    bn_momentum: Optional[float] = None
    #: BatchNorm epsilon.
    bn_epsilon: Optional[float] = None
    #: Dropout before the classifier.
    dropout_rate: Optional[float] = None
    #: Drop-path probability of the last block; how it grows over the blocks is
    #: `stochastic_depth_rule`.
    stochastic_depth_rate: Optional[float] = None
    #: How stochastic depth grows: "blocks" (block b of n: rate * b / n, TF-TPU/Keras),
    #: "tf_vision_specs" (TF-Vision MobileNet: spec i of n, stem and head included:
    #: rate * (i + 1) / n, attention blocks rate), "flat" (rate everywhere); None: the model's.
    stochastic_depth_rule: Optional[Literal["blocks", "tf_vision_specs", "flat"]] = None
    #: Replace every table activation ("relu", "relu6", "hard_swish", "swish", "gelu"); None: the
    #: table's.
    activation: Optional[str] = None
    #: Kernel initialiser scheme: TF-TPU EfficientNet, TF-Vision MobileNet or Flax's default.
    kernel_init: Optional[Literal["tf_tpu", "tf_vision", "flax"]] = None
    #: "same": TF "SAME" padding (TF-ported weights); "symmetric": k // 2 on each side (PyTorch).
    padding: Optional[Literal["same", "symmetric"]] = None
    #: None: BatchNorm statistics over the whole global batch; N: per group of N examples
    #: (the TF references compute them per replica).
    bn_group_size: Optional[int] = None
    #: What the BatchNorm moving variance moves towards: "biased" (the batch variance it normalises
    #: with, sum / n) or "unbiased" (Bessel-corrected, sum / (n - 1)), n the examples x positions
    #: the batch statistics average over (per group under bn_group_size). tf_keras'
    #: BatchNormalization on 4-D inputs is fused (`build`: fused = rank in (4, 5)) and its
    #: `_fused_batch_norm` keeps the fused op's corrected variance (`_bessels_correction_test_only`;
    #: tensorflow core/kernels/fused_batch_norm_op.cc `rest_size_adjust`): TF-Vision is "unbiased".
    #: TF-TPU EfficientNet's `TpuBatchNormalization` (utils.py) refuses fused=True and overrides
    #: `_moments` (tf.nn.moments, then E[x^2] - E[x]^2 across replicas): "biased".
    bn_moving_variance: Literal["biased", "unbiased"] = "biased"
    #: Compute precision; parameters, BatchNorm statistics, logits and the loss stay float32.
    dtype: Literal["bfloat16", "float32"] = "float32"

    def overrides(self) -> dict[str, Any]:
        """The keyword overrides for `flaxnets.models.create_model` (fields left at None omitted)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in ("name", "num_classes"):
                continue
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = value
        return out


@dataclass(frozen=True)
class DataConfig:
    """Input pipeline: sources, crops, normalisation and augmentation."""

    #: Training data: a folder of class folders or a packed record path (None: --data's train/).
    train_source: Optional[str] = None
    #: Evaluation data, as train_source (None: --data's val/).
    eval_source: Optional[str] = None
    #: Training and evaluation resolution (None: the model's default).
    image_size: Optional[int] = None
    #: Reference input pipeline (train crop, resize convention, eval centre crop): "tf_vision"
    #: (TF Model Garden classification_input), "tf_tpu" (TF-TPU EfficientNet preprocessing.py) or
    #: "inception" (TF-slim inception_preprocessing, with its colour distortion).
    crop: Literal["tf_vision", "tf_tpu", "inception"] = "tf_vision"
    #: Random-resized-crop area, as fractions of the image (min,max) (None: the crop flavour's:
    #: 0.08,1 for tf_vision and tf_tpu, 0.05,1 for inception).
    crop_area_range: Optional[tuple[float, float]] = None
    #: Random-resized-crop aspect ratio range (min,max) (None: the crop flavour's: 0.75,1.333 or
    #: 0.75,1.33 for inception).
    crop_aspect_range: Optional[tuple[float, float]] = None
    #: Random horizontal flip in training.
    flip: bool = True
    #: Evaluation centre-crop fraction (None: the model's default, e.g. 224/256 or size/(size+32)).
    eval_crop_fraction: Optional[float] = None
    #: Resize interpolation (None: in training the crop flavour's reference method, bilinear for
    #: tf_vision, bicubic for tf_tpu, TF-slim's choice for inception; in evaluation the model's).
    interpolation: Optional[Literal["bilinear", "bicubic", "area", "nearest"]] = None
    #: inception crop: TF-slim's fast_mode (its default): bilinear resize, brightness and
    #: saturation only; false draws one of 4 resize methods and 4 colour orderings with hue and
    #: contrast.
    inception_fast_mode: bool = True
    #: Decode training JPEGs at a reduced DCT scale (k/8) where the crop stays at least the output
    #: size: faster, but not the references' pixels (docs/BENCHMARKS.md has both figures).
    dct_scaled_decode: bool = False
    #: Per-channel mean on the 0-255 scale (None: the model's default).
    mean: Optional[tuple[float, float, float]] = None
    #: Per-channel standard deviation on the 0-255 scale (None: the model's default).
    std: Optional[tuple[float, float, float]] = None
    #: Policy augmentation after crop and flip, as TF-Vision's `official.vision.ops.augment`.
    augment: Literal["none", "autoaugment", "randaugment"] = "none"
    #: AutoAugment policy: "v0" (the EfficientNet one) or "simple".
    autoaugment_policy: str = "v0"
    #: RandAugment: ops applied per image.
    randaugment_num_layers: int = 2
    #: RandAugment: magnitude of every op, on TF's 0-10 scale (above 10 extrapolates).
    randaugment_magnitude: float = 10.0
    #: RandAugment: > 0 adds N(0, 1) noise to each op's magnitude, clipped to [0, 10] (TF-Vision
    #: adds unit-variance noise whatever this value is; 0: fixed magnitude).
    randaugment_magnitude_std: float = 0.0
    #: RandAugment: keep each layer's result with this probability (None: always).
    randaugment_prob_to_apply: Optional[float] = None
    #: RandAugment: op names never drawn, e.g. Cutout.
    randaugment_exclude_ops: tuple[str, ...] = ()
    #: Cutout half-side in pixels at magnitude 10 (the square is twice as wide), for both policies.
    cutout_const: float = 40.0
    #: Translation in pixels at magnitude 10, for both policies.
    translate_const: float = 100.0
    #: Probability of random erasing per image (0: off).
    random_erasing: float = 0.0
    #: Where AutoAugment / RandAugment / RandomErasing run: "host" (the loader's workers) or
    #: "device" (the host draws their random choices, the train step applies them on the
    #: accelerator before Mixup/CutMix; the same images from the same seed).
    augment_on: Literal["host", "device"] = "host"
    #: Mixup Beta-distribution alpha (0: off).
    mixup_alpha: float = 0.0
    #: CutMix Beta-distribution alpha (0: off).
    cutmix_alpha: float = 0.0
    #: Training-set size the recipe was written for; the schedule uses it when the data's count is
    #: within 1% of it, else the data's count (docs/TRAINING.md). None: count the data.
    num_train_examples: Optional[int] = None
    #: Loader worker processes per host.
    workers: int = 0
    #: Mixup/CutMix: probability that a batch is mixed at all (TF-Vision `mixup_and_cutmix.prob`).
    mix_prob: float = 1.0
    #: Mixup/CutMix: probability that a mixed batch uses CutMix rather than Mixup, when both
    #: alphas are set (TF-Vision `switch_prob`).
    mix_switch_prob: float = 0.5


def _with_registry_args(registry: Mapping[str, Any], section: str):
    """Class decorator for a section whose `name` picks an entry of `registry` (`flaxnets.optimizers`)
    and whose `args` hold that entry's arguments: the constructor also takes them as keywords
    (`OptimizerConfig(name="sgd", momentum=0.9)`), checks them against the entry and fills in the
    entry's defaults, so two sections that mean the same compare equal."""

    def wrap(cls):
        init = cls.__init__
        fields = {f.name for f in dataclasses.fields(cls)}

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            given = {k: kwargs.pop(k) for k in list(kwargs) if k not in fields}
            init(self, *args, **kwargs)
            object.__setattr__(self, "args", _checked_args(cls, {**self.args, **given}, self.name))

        def __getattr__(self, item):
            # The chosen entry's arguments read as attributes (`config.optimizer.b1`).
            args = self.__dict__.get("args", {})
            if item in args:
                return args[item]
            raise AttributeError(f"{cls.__name__} ({self.__dict__.get('name')!r}) has no attribute {item!r}")

        def __hash__(self):
            # As the other (frozen) sections are hashable, with the arguments' dict as items.
            return hash(tuple(tuple(v.items()) if isinstance(v, dict) else v for v in vars(self).values()))

        cls.__init__ = __init__
        cls.__getattr__ = __getattr__
        cls.__hash__ = __hash__
        cls.registry = registry
        cls.section = section
        return cls

    return wrap


def _checked_args(cls, given: Mapping[str, Any], name: str) -> dict[str, Any]:
    """`given` checked against the arguments of registry entry `name`, with its defaults filled in,
    in the entry's order; a one-line UsageError for an unknown name, argument or mistyped value."""
    section = cls.section
    if name not in cls.registry:
        raise UsageError(f"{section}.name={name!r}: expected {_describe(Literal[tuple(cls.registry)])}")
    accepted = cls.registry[name].args
    for key in given:
        if key not in accepted:
            raise _unknown_arg(cls, name, f"{section}.{key}")
    out = {}
    for key, arg in accepted.items():
        if key in given:
            ok, value = _try_coerce(given[key], arg.type)
            if not ok:
                raise UsageError(f"{section}.{key}={given[key]!r}: expected {_describe(arg.type)}")
            out[key] = value
        else:
            out[key] = arg.default
    return out


def _unknown_arg(cls, name: str, key: str) -> UsageError:
    """The error for a key of a registry section that is neither a field nor an argument of the
    chosen entry: what that entry takes, the closest key, and which entries take it if any do."""
    section, leaf = key.split(".", 1)
    own = [f"{section}.{a}" for a in cls.registry[name].args]
    fields = [f"{section}.{f.name}" for f in dataclasses.fields(cls) if f.name != "args"]
    others = [n for n, entry in cls.registry.items() if leaf in entry.args and n != name]
    close = [] if others else difflib.get_close_matches(key, own + fields, n=1, cutoff=0.5)
    if leaf in _LEGACY_NAMES.get(section, {}):
        close = [f"{section}.{_LEGACY_NAMES[section][leaf]}"]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    elsewhere = f" ({leaf} is an argument of {', '.join(others)}: set {section}.name first)" if others else ""
    takes = ", ".join(cls.registry[name].args) or "no arguments"
    return UsageError(f"unknown config key {key!r}: {section} {name!r} takes {takes}{elsewhere}{hint}")


@_with_registry_args(OPTIMIZERS, "optimizer")
@dataclass(frozen=True)
class OptimizerConfig:
    """The optimizer, its arguments and the regularisation around it (read by
    `flaxnets.train.optim.build_optimizer`). `optimizer.name` picks one of `flaxnets.optimizers.OPTIMIZERS`
    and `optimizer.ARGUMENT` sets that optimizer's arguments (listed below the sections); changing
    the name resets them to the new optimizer's defaults. The other keys apply to any optimizer."""

    #: The optimizer; each takes its own arguments, listed under "Optimizers and schedules".
    name: str = "adamw"
    #: The chosen optimizer's arguments, each set as `optimizer.ARGUMENT` (not a key itself).
    args: dict[str, Any] = field(default_factory=dict)
    #: Decoupled weight decay: w -= lr * weight_decay * w, for every parameter whose kind is not in
    #: `weight_decay_exclude` (AdamW with adamw).
    weight_decay: float = 0.0
    #: Parameter kinds without weight decay.
    weight_decay_exclude: tuple[ParamKind, ...] = ("bn_scale", "bn_bias")
    #: L2 regularisation: `l2 * w` added to the gradient (= 0.5 * l2 * ||w||^2 in the loss) for
    #: every parameter whose kind is not in `l2_exclude`.
    l2: float = 0.0
    #: Parameter kinds without L2.
    l2_exclude: tuple[ParamKind, ...] = ("bn_scale", "bn_bias")
    #: Clip the gradient to this global norm before the optimizer (None: no clipping).
    grad_clip_norm: Optional[float] = None


@_with_registry_args(SCHEDULES, "schedule")
@dataclass(frozen=True)
class ScheduleConfig:
    """The learning-rate schedule, stated in epochs (read by `flaxnets.train.schedules`).

    Every schedule is a function of the optimizer step counted from 0. `schedule.name` picks one of
    `flaxnets.optimizers.SCHEDULES` and `schedule.ARGUMENT` sets its arguments (listed below the
    sections; changing the name resets them). `constant`, `cosine` and `exponential` follow the TF
    references: the decay counts from step 0 and a warmup only replaces the first `warmup_epochs`,
    ramping linearly from `warmup_start_lr` to `warmup_target` ("peak": the peak LR, as TF-TPU
    EfficientNet/MnasNet; "schedule": the schedule's own value at the end of the warmup, as
    TF-Vision's LinearWarmup). `warmup_cosine` is optax's `warmup_cosine_decay_schedule`: the cosine
    starts only after the warmup.
    """

    #: The shape; each takes its own arguments, listed under "Optimizers and schedules".
    name: str = "cosine"
    #: The chosen schedule's arguments, each set as `schedule.ARGUMENT` (not a key itself).
    args: dict[str, Any] = field(default_factory=dict)
    #: Peak learning rate at `reference_batch` examples per step.
    base_lr: float = 0.001
    #: peak = base_lr * global_batch_size / reference_batch (None: peak = base_lr, no scaling).
    reference_batch: Optional[int] = None
    #: Length of the linear warmup.
    warmup_epochs: float = 0.0
    #: Learning rate at step 0 of the warmup.
    warmup_start_lr: float = 0.0
    #: Where the warmup ramps to: the peak, or the schedule's own value at its end.
    warmup_target: Literal["peak", "schedule"] = "peak"
    #: "floor": steps_per_epoch = floor(num_train / batch); "real": num_train / batch as a real
    #: number (the TF-TPU EfficientNet reference).
    steps_per_epoch_mode: Literal["floor", "real"] = "floor"


#: Keys of config.json files written before issue 13 (one flat field per argument of every
#: optimizer) and their names now; such files still load (`_upgrade_legacy`).
_LEGACY_NAMES = {
    "optimizer": {"adam_epsilon_hat": "epsilon_hat", "rmsprop_decay": "decay", "rmsprop_momentum": "momentum",
                  "rmsprop_eps": "eps", "rmsprop_initial_accumulator": "initial_scale"},
}
_LEGACY_OPTIMIZERS = {"adamw": ("adamw", ("b1", "b2", "eps", "adam_epsilon_hat")),
                      "rmsprop_tf": ("rmsprop", ("rmsprop_decay", "rmsprop_momentum", "rmsprop_eps",
                                                 "rmsprop_initial_accumulator")),
                      "sgd": ("sgd", ("momentum", "nesterov"))}
_LEGACY_SCHEDULE_ARGS = ("decay_epochs", "decay_rate", "staircase", "alpha")


def _upgrade_legacy(section: str, data: dict[str, Any]) -> dict[str, Any]:
    """A config.json section in the flat layout before issue 13, in today's: the chosen optimizer's
    arguments under their new names (rmsprop_tf is rmsprop with eps in the root, as before), the
    other optimizers' and schedules' arguments, which were ignored, dropped."""
    if section == "optimizer" and "rmsprop_decay" in data and data.get("name") in _LEGACY_OPTIMIZERS:
        name, used = _LEGACY_OPTIMIZERS[data["name"]]
        legacy = set(_LEGACY_NAMES["optimizer"]) | {"b1", "b2", "eps", "momentum", "nesterov"}
        out = {k: v for k, v in data.items() if k not in legacy}
        out["name"] = name
        out.update({_LEGACY_NAMES["optimizer"].get(k, k): data[k] for k in used if k in data})
        return out
    if section == "schedule" and all(k in data for k in _LEGACY_SCHEDULE_ARGS) and data.get("name") in SCHEDULES:
        accepted = SCHEDULES[data["name"]].args
        return {k: v for k, v in data.items() if k not in _LEGACY_SCHEDULE_ARGS or k in accepted}
    return data


@dataclass(frozen=True)
class LossConfig:
    """Softmax cross-entropy (computed in float32)."""

    #: Weight moved from the true class to the uniform distribution over all classes.
    label_smoothing: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    """Length and batch of the run."""

    #: Examples per optimizer step over all devices and accumulation micro-steps.
    global_batch_size: int = 256
    #: Length of the run in passes over the training set.
    epochs: float = 1.0
    #: Micro-steps per optimizer step (each of global_batch_size // grad_accum_steps examples).
    grad_accum_steps: int = 1
    #: Adapt a recipe written for other data to this data and run (`flaxnets.train.adapt`): the
    #: data's class count as model.num_classes, a BatchNorm momentum or (non-dynamic) EMA decay
    #: that averages over more than a tenth of the run made faster, a bn_group_size larger than
    #: the micro-batch made the micro-batch; each change is a line of the start summary and the
    #: adapted config is WORKDIR/config.json. False: the recipe verbatim.
    adapt_to_data: bool = True

    @property
    def micro_batch_size(self) -> int:
        """Examples per forward/backward pass over all devices."""
        return self.global_batch_size // self.grad_accum_steps


@dataclass(frozen=True)
class EmaConfig:
    """Exponential moving average of the weights, updated once per optimizer step."""

    #: Decay of the average per optimizer step (None: no EMA).
    decay: Optional[float] = None
    #: Average BatchNorm running statistics too (TF-TPU) or only trainable weights (TF-Vision).
    include_batch_stats: bool = False
    #: Use min(decay, (1 + step) / (10 + step)) as TF's ExponentialMovingAverage(num_updates=step)
    #: and TF-Vision's `dynamic_decay` do, so early averages are not dominated by the init.
    dynamic_decay: bool = True
    #: Until this optimizer step the average copies the weights (TF-Vision `start_step`); the
    #: dynamic decay counts from it.
    start_step: int = 0


@dataclass(frozen=True)
class EvalConfig:
    """When and how to evaluate."""

    #: Evaluate every this many epochs (and at the end).
    every_epochs: Optional[float] = 1.0
    #: Evaluate every this many optimizer steps; takes precedence over every_epochs.
    every_steps: Optional[int] = None
    #: Global evaluation batch; the last batch is padded and the padding not counted.
    batch_size: int = 256


@dataclass(frozen=True)
class CheckpointConfig:
    """What to keep in the work directory."""

    #: Most recent checkpoints kept.
    keep: int = 2
    #: Also keep the checkpoint with the best evaluation top-1.
    keep_best: bool = True
    #: Save every N optimizer steps (None: at each evaluation).
    every_steps: Optional[int] = None


@dataclass(frozen=True)
class LogConfig:
    """Training metric logging."""

    #: Log the mean training metrics every this many optimizer steps.
    every_steps: int = 100


@dataclass(frozen=True)
class ProgressiveConfig:
    """Progressive learning (Tan & Le, "EfficientNetV2", 2021, section 4.2), as google/automl
    efficientnetv2/main.py runs it: the training steps cut into `stages` equal parts, each at a
    larger image size and with stronger regularisation than the last (read by
    `flaxnets.train.progressive.stage_plan`). Stage i of n (from 0) ends after
    int((i + 1) / n * total steps) steps and trains at int(base + (final - base) * (i + 1) / n)
    pixels, so even the first stage is above the base; each regulariser given as min,max is
    numpy.linspace(min, max, n)[i]. Evaluation stays at data.image_size."""

    #: Number of stages (None: off, one size and the data/model values throughout).
    stages: Optional[int] = None
    #: The size the stages grow from (automl `data.ibase`; None: half the final size, as automl's
    #: `ibase or input_image_size / 2`).
    base_image_size: Optional[int] = None
    #: The last stage's training size (automl `train.isize`; None: data.image_size, else the
    #: model's resolution).
    final_image_size: Optional[int] = None
    #: RandAugment magnitude of the first and the last stage, min,max (None: data.randaugment_magnitude
    #: throughout).
    randaugment_magnitude: Optional[tuple[float, float]] = None
    #: Mixup alpha of the first and the last stage, min,max (None: data.mixup_alpha throughout).
    mixup_alpha: Optional[tuple[float, float]] = None
    #: CutMix alpha of the first and the last stage, min,max (None: data.cutmix_alpha throughout).
    cutmix_alpha: Optional[tuple[float, float]] = None
    #: Dropout rate before the classifier of the first and the last stage, min,max (None:
    #: model.dropout_rate throughout).
    dropout_rate: Optional[tuple[float, float]] = None


@dataclass(frozen=True)
class QuantConfig:
    """Quantization-aware training (Qwix's ODML provider): the forward pass computes with int8
    fake-quantized weights and activations as the full-integer LiteRT model will, and learns the
    activation ranges that `flaxnets export --format tflite --int8` then uses."""

    #: none: float training; qat: fake-quantized weights and activations in every forward pass.
    mode: Literal["none", "qat"] = "none"
    #: Integer type of convolution and dense weights (Qwix `weight_qtype`), symmetric.
    weight_dtype: Literal["int8"] = "int8"
    #: Integer type of every activation tensor (Qwix `act_qtype`), one scale per tensor.
    activation_dtype: Literal["int8"] = "int8"
    #: One weight scale per output channel (LiteRT's int8 convolutions), else one per tensor.
    per_channel_weights: bool = True
    #: How each batch's activation range is taken (Qwix `act_calibration_method`); the learned
    #: range is the mean over training steps. minmax: asymmetric [min, max] (LiteRT's int8
    #: activations); absmax: symmetric; either optionally ",<factor>" in (0, 1] to shrink it.
    activation_calibration: str = "minmax"


@dataclass(frozen=True)
class Config:
    """A whole experiment; see the module docstring."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    progressive: ProgressiveConfig = field(default_factory=ProgressiveConfig)
    #: The one seed every random choice derives from (initialisation, data order, augmentation).
    seed: int = 42
    #: Recipe name.
    name: str = ""
    #: Where the recipe comes from (paper, reference code).
    source: str = ""
    #: Anything a reader should know about the recipe.
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible nested dict (tuples become lists)."""
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        """Inverse of `to_dict`; unknown keys or wrongly typed values raise UsageError."""
        return _from_dict(cls, data, prefix="")

    def to_json(self) -> str:
        """`to_dict()` as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> "Config":
        """Inverse of `to_json`."""
        return cls.from_dict(json.loads(text))

    def validate(self) -> "Config":
        """Check cross-field constraints; returns self or raises UsageError."""
        t = self.train
        if t.global_batch_size <= 0:
            raise UsageError(f"train.global_batch_size={t.global_batch_size}: expected a positive integer")
        if t.grad_accum_steps <= 0 or t.global_batch_size % t.grad_accum_steps:
            raise UsageError(
                f"train.grad_accum_steps={t.grad_accum_steps}: expected a positive divisor of "
                f"train.global_batch_size={t.global_batch_size}"
            )
        if t.epochs <= 0:
            raise UsageError(f"train.epochs={t.epochs}: expected a positive number")
        group, micro = self.model.bn_group_size, t.micro_batch_size
        # Groups are cut from each forward pass; otherwise the model fails at the first step. A
        # group larger than the micro-batch becomes the micro-batch when training adapts the
        # recipe (`flaxnets.train.adapt`).
        if group is not None and (group <= 0 or (micro % group and not (group > micro and t.adapt_to_data))):
            working = [d for d in range(min(max(group, 1), micro), 0, -1) if micro % d == 0][:2]
            raise UsageError(
                f"model.bn_group_size={group}: expected a positive divisor of the {micro} examples per "
                f"forward pass (train.global_batch_size={t.global_batch_size} / train.grad_accum_steps="
                f"{t.grad_accum_steps}); set it to {' or '.join(str(d) for d in working)}, or none for "
                "statistics over the whole micro-batch"
            )
        s = self.schedule
        if s.base_lr < 0:
            raise UsageError(f"schedule.base_lr={s.base_lr}: expected a non-negative number")
        if s.reference_batch is not None and s.reference_batch <= 0:
            raise UsageError(f"schedule.reference_batch={s.reference_batch}: expected a positive integer or none")
        if s.warmup_epochs < 0:
            raise UsageError(f"schedule.warmup_epochs={s.warmup_epochs}: expected >= 0")
        decay_epochs = s.args.get("decay_epochs")
        if decay_epochs is not None and decay_epochs <= 0:
            raise UsageError(f"schedule.decay_epochs={decay_epochs}: expected a positive number or none")
        if not 0.0 <= self.loss.label_smoothing < 1.0:
            raise UsageError(f"loss.label_smoothing={self.loss.label_smoothing}: expected a value in [0, 1)")
        if self.ema.decay is not None and not 0.0 < self.ema.decay < 1.0:
            raise UsageError(f"ema.decay={self.ema.decay}: expected a value in (0, 1) or none")
        if self.ema.start_step < 0:
            raise UsageError(f"ema.start_step={self.ema.start_step}: expected >= 0")
        if self.data.num_train_examples is not None and self.data.num_train_examples <= 0:
            raise UsageError(f"data.num_train_examples={self.data.num_train_examples}: expected a positive integer or none")
        area = self.data.crop_area_range
        if area is not None and not 0.0 < area[0] <= area[1] <= 1.0:
            raise UsageError(f"data.crop_area_range={area[0]},{area[1]}: expected 0 < min <= max <= 1")
        aspect = self.data.crop_aspect_range
        if aspect is not None and not 0.0 < aspect[0] <= aspect[1]:
            raise UsageError(f"data.crop_aspect_range={aspect[0]},{aspect[1]}: expected 0 < min <= max")
        for key in ("mix_prob", "mix_switch_prob"):
            if not 0.0 <= getattr(self.data, key) <= 1.0:
                raise UsageError(f"data.{key}={getattr(self.data, key)}: expected a probability in [0, 1]")
        self._validate_progressive()
        if self.quant.mode == "qat" and self.model.dtype != "float32":
            # Qwix's fake quantization of a bfloat16 network learns a different set of ranges
            # (EfficientNet's squeeze-excite: one range fewer) than the float32 network the int8
            # LiteRT export rebuilds, and the int8 model never computes in bfloat16.
            raise UsageError(f"quant.mode=qat with model.dtype={self.model.dtype}: quantization-aware training "
                             "computes in float32, as the int8 export it prepares (set model.dtype=float32)")
        calibration = self.quant.activation_calibration
        method, *factor = calibration.split(",")
        if method not in ("minmax", "absmax") or len(factor) > 1 or not _is_fraction(factor):
            raise UsageError(f"quant.activation_calibration={calibration!r}: expected minmax or absmax, "
                             "optionally ,<factor> with 0 < factor <= 1 (e.g. minmax,0.9)")
        return self


    def _validate_progressive(self) -> None:
        """One-line errors for stage settings that cannot run (`ProgressiveConfig`); whether a
        stage's size suits the model is `flaxnets.train.progressive.stage_plan`'s check."""
        p = self.progressive
        if p.stages is None:
            given = [f.name for f in dataclasses.fields(p) if getattr(p, f.name) is not None]
            if given:
                raise UsageError(f"progressive.{given[0]}={_format_value(getattr(p, given[0]))}: "
                                 "set progressive.stages too (none: progressive learning is off)")
            return
        if p.stages < 1:
            raise UsageError(f"progressive.stages={p.stages}: expected a positive number of stages, or none")
        for key in ("base_image_size", "final_image_size"):
            size = getattr(p, key)
            if size is not None and size <= 0:
                raise UsageError(f"progressive.{key}={size}: expected a positive number of pixels, or none")
        final = p.final_image_size or self.data.image_size
        if p.base_image_size is not None and final is not None and p.base_image_size > final:
            raise UsageError(f"progressive.base_image_size={p.base_image_size}: expected at most the final "
                             f"training size {final}")
        for key in ("randaugment_magnitude", "mixup_alpha", "cutmix_alpha", "dropout_rate"):
            span = getattr(p, key)
            if span is None:
                continue
            low, high = span
            if not 0.0 <= low <= high:
                raise UsageError(f"progressive.{key}={low:g},{high:g}: expected 0 <= min <= max")
            if key == "dropout_rate" and high >= 1.0:
                raise UsageError(f"progressive.{key}={low:g},{high:g}: expected rates below 1")
        if p.randaugment_magnitude is not None and self.data.augment != "randaugment":
            raise UsageError(f"progressive.randaugment_magnitude={p.randaugment_magnitude[0]:g},"
                             f"{p.randaugment_magnitude[1]:g}: data.augment is {self.data.augment!r}; "
                             "expected randaugment")
        if self.quant.mode == "qat":
            raise UsageError(f"progressive.stages={p.stages}: quantization-aware training (quant.mode=qat) "
                             "calibrates at one image size; expected progressive.stages=none")

def _is_fraction(factor: list[str]) -> bool:
    """True for [] or [a number in (0, 1]]."""
    if not factor:
        return True
    try:
        return 0.0 < float(factor[0]) <= 1.0
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# Overrides


def config_keys(config: Config | None = None) -> list[str]:
    """Every settable dotted key of `config` (default: `Config()`), e.g. `optimizer.weight_decay`;
    the optimizer's and schedule's arguments are those of the ones `config` names."""
    return [key for key, *_ in _leaves(Config() if config is None else config, "")]


def apply_overrides(config: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """Return a copy of `config` with each `"dotted.key=value"` applied in order.

    Values are parsed as the field's declared type: int, float, bool (true/false/yes/no/1/0),
    str, `none` for Optional fields, Literal choices, and tuples written `a,b,c` (or `[a, b]`,
    `()` for empty). An unknown key or a wrongly typed value raises UsageError naming it (with the
    closest valid key for typos).
    """
    for item in overrides:
        if "=" not in item:
            raise UsageError(f"override {item!r}: expected KEY=VALUE, e.g. optimizer.weight_decay=0.05")
        key, text = item.split("=", 1)
        key = key.strip()
        config = _set(config, key, text.strip())
    return config.validate()


def _section_leaves(section):
    """(field, type, value, meaning) of each settable non-section field of a dataclass instance; in a
    registry section (`_with_registry_args`): `name`, then the chosen entry's arguments, then the rest."""
    hints = typing.get_type_hints(type(section))
    comments = _field_comments(type(section))
    registry = getattr(type(section), "registry", None)
    for f in dataclasses.fields(section):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp) or (registry is not None and f.name == "args"):
            continue
        if registry is not None and f.name == "name":
            yield "name", Literal[tuple(registry)], section.name, comments["name"]
            for arg, spec in registry[section.name].args.items():
                yield arg, spec.type, section.args[arg], f"{section.name}: {spec.meaning}"
        else:
            yield f.name, tp, getattr(section, f.name), comments[f.name]


def _leaves(obj, prefix: str):
    """(dotted key, type, value, meaning) of every settable key under dataclass instance `obj`."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _leaves(value, f"{prefix}{f.name}.")
    for name, tp, value, meaning in _section_leaves(obj):
        yield f"{prefix}{name}", tp, value, meaning


@dataclass(frozen=True)
class KeyDoc:
    """One settable key: its `--set` spelling, the values it takes, its default and meaning."""

    key: str
    values: str
    default: str
    meaning: str


def describe_keys(config: Config | None = None) -> list[KeyDoc]:
    """Every settable key of `config` (default: `Config()`) with its type, its value in `config`
    (written as `--set` takes it) and its meaning: the `#:` comment above its field, or for an
    argument of the chosen optimizer or schedule, its `flaxnets.optimizers` entry's."""
    config = Config() if config is None else config
    return [KeyDoc(key, _describe(tp), _format_value(value), meaning)
            for key, tp, value, meaning in _leaves(config, "")]


@dataclass(frozen=True)
class ChoiceDoc:
    """One entry of `flaxnets.optimizers.OPTIMIZERS` or `SCHEDULES`: the section that names it, its
    name, what it is, and its arguments (`KeyDoc`s keyed `section.ARGUMENT`, with their defaults)."""

    section: str
    name: str
    doc: str
    args: tuple[KeyDoc, ...]


def describe_choices() -> list[ChoiceDoc]:
    """Every optimizer and schedule a config can name, with each argument's type, default and meaning."""
    out = []
    for cls in (OptimizerConfig, ScheduleConfig):
        for name, entry in cls.registry.items():
            args = tuple(KeyDoc(f"{cls.section}.{arg}", _describe(spec.type), _format_value(spec.default), spec.meaning)
                         for arg, spec in entry.args.items())
            out.append(ChoiceDoc(cls.section, name, entry.doc, args))
    return out


def _format_value(value) -> str:
    """A value as `--set` would take it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(_format_value(v) for v in value) if value else "()"
    if isinstance(value, str):
        return value or '""'
    return repr(value)


@functools.cache
def _field_comments(cls) -> dict[str, str]:
    """{field name: the `#:` comment lines directly above it, joined} for dataclass `cls`."""
    lines = inspect.getsource(cls).splitlines()
    out = {}
    for node in ast.parse(textwrap.dedent("\n".join(lines))).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            text, row = [], node.lineno - 2
            while row >= 0 and lines[row].strip().startswith("#:"):
                text.insert(0, lines[row].strip()[2:].strip())
                row -= 1
            out[node.target.id] = " ".join(text)
    return out


def _unknown_key(key: str, valid: list[str]) -> UsageError:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    if not close:
        # A bare field name (e.g. "weight_decay") is matched against the last component.
        tails = {v.rsplit(".", 1)[-1]: v for v in valid}
        match = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(tails), n=1, cutoff=0.6)
        close = [tails[m] for m in match]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return UsageError(f"unknown config key {key!r}{hint}")


def _set(config: Config, key: str, text: str) -> Config:
    parts = key.split(".")
    chain = [config]
    for part in parts[:-1]:
        obj = chain[-1]
        value = getattr(obj, part) if part in {f.name for f in dataclasses.fields(obj)} else None
        if not dataclasses.is_dataclass(value):
            raise _unknown_key(key, config_keys(config))
        chain.append(value)
    parent, leaf = chain[-1], parts[-1]
    types_ = {name: tp for name, tp, *_ in _section_leaves(parent)}
    if leaf not in types_:
        if dataclasses.is_dataclass(getattr(parent, leaf, None)):
            section = getattr(parent, leaf)
            raise UsageError(f"config key {key!r} is a section; set one of its fields, e.g. "
                             f"{key}.{dataclasses.fields(section)[0].name}=...")
        if hasattr(type(parent), "registry"):
            raise _unknown_arg(type(parent), parent.name, key)
        raise _unknown_key(key, config_keys(config))
    value = _parse(text, types_[leaf], key)
    if hasattr(type(parent), "registry") and leaf == "name":
        # Another optimizer or schedule starts from its own defaults.
        new = dataclasses.replace(parent, name=value, args=parent.args if value == parent.name else {})
    elif hasattr(type(parent), "registry") and leaf in parent.args:
        new = dataclasses.replace(parent, args={**parent.args, leaf: value})
    else:
        new = dataclasses.replace(parent, **{leaf: value})
    for obj, part in zip(reversed(chain[:-1]), reversed(parts[:-1])):
        new = dataclasses.replace(obj, **{part: new})
    return new


_NONE_WORDS = ("none", "null", "")
_TRUE_WORDS = ("true", "yes", "1", "on")
_FALSE_WORDS = ("false", "no", "0", "off")


def _describe(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join("none" if a is type(None) else _describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        inner = _describe(args[0]) if args else "value"
        return f"a comma-separated list of {inner}" if len(args) != 2 or args[1] is Ellipsis else f"{len(args)} comma-separated values"
    return getattr(tp, "__name__", str(tp))


def _parse(text: str, tp, key: str):
    """Parse command-line text into a value of type `tp`."""
    try:
        return _parse_inner(text, tp)
    except (ValueError, TypeError):
        raise UsageError(f"{key}={text!r}: expected {_describe(tp)}") from None


def _parse_inner(text: str, tp):
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and text.strip().lower() in _NONE_WORDS:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _parse_inner(text, arg)
            except (ValueError, TypeError):
                continue
        raise ValueError(text)
    if origin is Literal:
        choices = typing.get_args(tp)
        for choice in choices:
            if text == str(choice):
                return choice
        raise ValueError(text)
    if origin is tuple:
        args = typing.get_args(tp)
        body = text.strip()
        if body[:1] in "([" and body[-1:] in ")]":
            body = body[1:-1]
        items = [s.strip().strip("'\"") for s in body.split(",") if s.strip()]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse_inner(s, args[0]) for s in items)
        if len(items) != len(args):
            raise ValueError(text)
        return tuple(_parse_inner(s, a) for s, a in zip(items, args))
    if tp is bool:
        low = text.strip().lower()
        if low in _TRUE_WORDS:
            return True
        if low in _FALSE_WORDS:
            return False
        raise ValueError(text)
    if tp is int:
        return int(text.strip().replace("_", ""))
    if tp is float:
        return float(text.strip().replace("_", ""))
    if tp is str:
        return text
    raise TypeError(f"unsupported field type {tp}")


# ---------------------------------------------------------------------------------------------
# JSON round trip


def _to_dict(obj) -> Any:
    if dataclasses.is_dataclass(obj):
        items = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        if hasattr(type(obj), "registry"):
            # Flat, as the keys are spelled: name, the chosen entry's arguments, the other fields.
            args = items.pop("args")
            items = {"name": items.pop("name"), **args, **items}
        return {k: _to_dict(v) for k, v in items.items()}
    if isinstance(obj, tuple):
        return [_to_dict(v) for v in obj]
    return obj


def _from_dict(cls, data: dict[str, Any], prefix: str):
    if not isinstance(data, dict):
        raise UsageError(f"config section {prefix.rstrip('.') or 'root'!r}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    registry = getattr(cls, "registry", None)
    if registry is not None:
        data = _upgrade_legacy(cls.section, data)
        names.discard("args")
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if name not in names:
            if registry is not None:
                kwargs[name] = value  # an argument of the chosen entry: the constructor checks it
                continue
            raise _unknown_key(key, config_keys())
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _from_dict(tp, value, key + ".")
        else:
            kwargs[name] = _coerce(value, tp, key)
    return cls(**kwargs)


def _coerce(value, tp, key: str):
    """Check a JSON value against `tp`, turning lists back into tuples."""
    ok, out = _try_coerce(value, tp)
    if not ok:
        raise UsageError(f"{key}={value!r}: expected {_describe(tp)}")
    return out


def _try_coerce(value, tp):
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, out = _try_coerce(value, arg)
            if ok:
                return True, out
        return False, None
    if tp is type(None):
        return value is None, None
    if origin is Literal:
        return value in typing.get_args(tp), value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False, None
        args = typing.get_args(tp)
        elem_types = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(elem_types) != len(value):
            return False, None
        out = []
        for v, a in zip(value, elem_types):
            ok, o = _try_coerce(v, a)
            if not ok:
                return False, None
            out.append(o)
        return True, tuple(out)
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else None
    if tp is str:
        return isinstance(value, str), value
    return False, None

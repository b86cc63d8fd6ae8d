"""The model zoo: one `ModelSpec` per registry name, and `create_model`.

Each family registers itself in its own file: its architecture builder with
`@register_family(name)` and its models with `register_models(...)` (as timm's
`@register_model`). This module imports no family; `flaxnets.models` imports them all.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Callable

from flax import nnx

from flaxnets.errors import FlaxnetsError, UsageError
from flaxnets.models.blocks import Architecture, Knobs

# Input normalisations on the 0-255 scale, each defined once: the model defaults below, the weight
# importers and the recipes read them from here.
#: ImageNet mean/std x 255: TF-Vision `MEAN_RGB`/`STDDEV_RGB` (official/vision/ops/preprocess_ops.py),
#: TF-TPU EfficientNet `MEAN_RGB`/`STDDEV_RGB` (efficientnet_builder.py), timm and torchvision.
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
#: (x - 127.5) / 127.5, i.e. [-1, 1]: Keras-applications MobileNets, TF-slim `inception_preprocessing`.
INCEPTION_MEAN = (127.5, 127.5, 127.5)
INCEPTION_STD = (127.5, 127.5, 127.5)
#: TF-TPU EfficientNet-Lite: mean 127, std 128 (lite/efficientnet_lite_builder.py).
LITE_MEAN = (127.0, 127.0, 127.0)
LITE_STD = (128.0, 128.0, 128.0)


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its family builder's arguments and its defaults.

    mean/std (0-255 scale) describe the inputs the model's imported weights were trained on, so
    `predict`/`eval` of those weights use them; a training recipe states its own normalisation
    (data.mean/data.std) from its source. `crop_fraction` is the eval centre-crop fraction and
    `eval_crop` the reference pipeline whose centre-crop arithmetic and resize evaluate those
    weights (a `data.crop` flavour: "inception" = TF-slim, "tf_tpu", "tf_vision");
    `published_macs` is the source's multiply-add figure as printed ("219M", "0.39B"), whose
    digits give its precision; `published_top1` is the source's ImageNet top-1 (%), or None.
    `defaults` holds further facts of the source that no knob reads, e.g. "train_resolution"
    where the source trains below `resolution`, its evaluation size.
    """

    name: str
    family: str
    family_args: dict[str, Any]
    resolution: int
    crop_fraction: float
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    dropout_rate: float
    published_top1: float | None
    published_macs: str | None = None
    stochastic_depth_rate: float = 0.0
    stochastic_depth_rule: str | None = None
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    kernel_init: str = "tf_tpu"
    defaults: dict[str, Any] = field(default_factory=dict)
    eval_crop: str = "tf_vision"

    def architecture(self) -> Architecture:
        """The family table and scaling rules this name builds."""
        return _FAMILIES[self.family](**self.family_args)

    def knobs(self, num_classes: int = 1000, **overrides) -> Knobs:
        """The creation knobs: this spec's defaults with `overrides` applied."""
        base = Knobs(num_classes=num_classes, bn_momentum=self.bn_momentum,
                     bn_epsilon=self.bn_epsilon, dropout_rate=self.dropout_rate,
                     stochastic_depth_rate=self.stochastic_depth_rate,
                     stochastic_depth_rule=self.stochastic_depth_rule,
                     kernel_init=self.kernel_init)
        return base.replace(**overrides).check()


def tf_slim_mobilenet(name: str, family: str, family_args: dict[str, Any],
                      top1: float | None, macs: str | None = None) -> ModelSpec:
    """The spec of a MobileNet whose imported weights are the Keras-applications ones.

    Those take inputs in [-1, 1], crop 0.875, bilinear: they are TF-slim's checkpoints,
    evaluated by TF-slim's inception_preprocessing.preprocess_for_eval (research/slim in
    tensorflow/models). TF-Vision *trains* MobileNets on ImageNet mean/std instead
    (classification_input.py); its recipes say so.
    """
    return ModelSpec(name, family, family_args, 224, 0.875, "bilinear", INCEPTION_MEAN,
                     INCEPTION_STD, 0.2, top1, macs, kernel_init="tf_vision", eval_crop="inception")


#: Registry name -> spec, filled by the family modules as `flaxnets.models` imports them
#: (`register_models`), in zoo order.
REGISTRY: dict[str, ModelSpec] = {}
_FAMILIES: dict[str, Callable[..., Architecture]] = {}


def register_family(name: str):
    """Decorator: register a family's architecture builder (its keyword arguments are a
    `ModelSpec.family_args`) under `name`, in the family's own file."""
    def register(builder: Callable[..., Architecture]) -> Callable[..., Architecture]:
        if name in _FAMILIES:
            raise FlaxnetsError(f"model family {name!r} is registered twice")
        _FAMILIES[name] = builder
        return builder

    return register


def register_models(*specs: ModelSpec) -> None:
    """Register model specs of families already registered (each name once)."""
    for spec in specs:
        if spec.family not in _FAMILIES:
            raise FlaxnetsError(f"model {spec.name!r}: family {spec.family!r} is not registered")
        if spec.name in REGISTRY:
            raise FlaxnetsError(f"model {spec.name!r} is registered twice")
        REGISTRY[spec.name] = spec


OVERRIDES = tuple(f.name for f in dataclasses.fields(Knobs) if f.name != "num_classes")


def _unknown(kind: str, value: str, valid) -> FlaxnetsError:
    close = difflib.get_close_matches(value, list(valid), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return FlaxnetsError(f"unknown {kind} {value!r}{hint}; expected one of {', '.join(valid)}")


def list_models() -> list[str]:
    """Every registry name, in zoo order."""
    return list(REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The `ModelSpec` registered as `name`; FlaxnetsError (with a suggestion) if unknown."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise _unknown("model", name, REGISTRY) from None


#: The smallest input side counted, summarised, benchmarked or exported. Every zoo network is
#: fully convolutional up to a global average pool, and its padding (SAME or k // 2) keeps at
#: least one pixel through each stride-2 layer, so an 8 px input reaches the classifier as a 1x1
#: map; an ONNX export at 8 px matches JAX (relative difference 1.5e-6, mobilenet_v3_small).
#: Export's former 32 (the total stride) was not a limit of the networks.
MIN_RESOLUTION = 8


def model_input(name: str, resolution: int | None = None) -> tuple[ModelSpec, int]:
    """The spec of `name` and the input side to use (`resolution`, else the spec's), as the
    commands take NAME and --resolution: an unknown name or a side below `MIN_RESOLUTION` is a
    UsageError (exit status 2)."""
    try:
        spec = get_spec(name)
    except FlaxnetsError as e:
        raise UsageError(str(e)) from None
    resolution = spec.resolution if resolution is None else resolution
    if resolution < MIN_RESOLUTION:
        raise UsageError(f"--resolution {resolution} is too small; expected at least {MIN_RESOLUTION}")
    return spec, resolution


def create_model(name: str, *, num_classes: int = 1000, rngs: nnx.Rngs | None = None,
                 **overrides) -> nnx.Module:
    """Build the registered model `name` with freshly initialised parameters.

    Overrides (defaults from the spec): bn_momentum, bn_epsilon, dropout_rate,
    stochastic_depth_rate, stochastic_depth_rule ("blocks" | "tf_vision_specs" | "flat", see
    `blocks.drop_path_rates`), activation ("relu" | "relu6" | "hard_swish" | "swish" | "gelu": replaces
    every table activation, squeeze-excite's inner one included, but not its sigmoid gate),
    kernel_init ("tf_tpu" | "tf_vision" | "flax"), dtype (compute dtype; parameters stay
    float32), padding ("same" = TF SAME | "symmetric" = k//2 on each side), bn_group_size
    (None: BN statistics over the whole batch; N: per group of N examples).
    `rngs` defaults to `nnx.Rngs(0)`. The model starts in train mode.
    """
    spec = get_spec(name)
    for key in overrides:
        if key not in OVERRIDES:
            raise _unknown("override", key, OVERRIDES)
    knobs = spec.knobs(num_classes=num_classes, **overrides)
    return spec.architecture().build(knobs, rngs=rngs if rngs is not None else nnx.Rngs(0))

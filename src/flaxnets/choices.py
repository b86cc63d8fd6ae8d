"""The optimizers and learning-rate schedules a config can name: one registry entry each, no JAX.

`optimizer.name` picks an entry of `OPTIMIZERS` and `optimizer.<argument>` sets its arguments;
`schedule.name` / `schedule.<argument>` pick from `SCHEDULES` the same way. Each argument is declared
once, here, with its type, default and meaning: `flaxnets.config` checks `--set` and config.json
against it and `flaxnets recipes --keys` prints it. An entry names the function that builds it by
its dotted path (`"optax.rmsprop"`, or one of `flaxnets.optimizers`, where the optax code of our
own lives), imported only when a run builds it (`entry.make`): so the base layer, and with it
`import flaxnets.config`, loads no JAX (tests/test_layers.py). Adding an optimizer optax already
has is one entry, e.g.

    "lion": Optimizer("optax.lion", "Lion (optax.lion).", {
        "b1": Arg(float, 0.9, "Rate of the update's interpolation."),
        "b2": Arg(float, 0.99, "Decay of the momentum.")}),

(tests/train/test_optim.py holds each entry's arguments to the signature of the optax function it
calls). A schedule's builder also gets the run (`ScheduleRun`) to turn epochs into steps; a shape
the TF-style warmup wraps is a few lines in `flaxnets.optimizers` and one entry here:

    def polynomial(run, power):  # flaxnets.optimizers
        return tf_style_warmup(run, optax.polynomial_schedule(run.peak, 0.0, power, run.steps(run.epochs)))

    "polynomial": ScheduleKind("flaxnets.optimizers.polynomial",
        "Polynomial decay to 0 over the run (optax.polynomial_schedule).",
        {"power": Arg(float, 1.0, "Exponent of the decay.")}),

A builder may also be given as the function itself (tests do), where the caller has imported it.
What is not per optimizer stays explicit keys of `flaxnets.config.OptimizerConfig`, applied by
`flaxnets.train.optim`: L2 added to the gradient, decoupled weight decay, clipping, the masks by
parameter kind; likewise the peak, batch scaling and warmup of `ScheduleConfig`.
"""

from __future__ import annotations

import importlib
import math
from typing import Any, Callable, Mapping, NamedTuple, Optional, Union

# Epoch counts such as 218000/312 must not lose a step to floating-point rounding.
_STEP_TOLERANCE = 1e-6

#: A builder: the dotted path of a function ("optax.rmsprop"), or the function.
Builder = Union[str, Callable[..., Any]]


def resolve(builder: Builder) -> Callable[..., Any]:
    """The function `builder` names (imported now), or `builder` itself when it is one."""
    if callable(builder):
        return builder
    module, _, name = builder.rpartition(".")
    return getattr(importlib.import_module(module), name)


class Arg(NamedTuple):
    """One argument of a registry entry: its config type, default and meaning."""

    type: Any
    default: Any
    meaning: str


class Optimizer(NamedTuple):
    """An optimizer: `make(learning_rate, **args)` returns the optax transformation, whose last step
    applies the learning rate (a schedule of the step count) and gives the negative update."""

    builder: Builder
    doc: str
    args: Mapping[str, Arg]
    #: Why `optimizer.weight_decay` is refused with this optimizer (None: it is allowed).
    no_weight_decay: Optional[str] = None

    @property
    def make(self) -> Callable[..., Any]:
        """The builder function (imports it, and with it optax, on first use)."""
        return resolve(self.builder)


class ScheduleRun(NamedTuple):
    """What a schedule needs to know of the run: the peak learning rate, steps per epoch (possibly
    real), the run's length in epochs and the warmup (see `flaxnets.config.ScheduleConfig`)."""

    peak: float
    steps_per_epoch: float
    epochs: float
    warmup_steps: int
    warmup_start_lr: float
    warmup_target: str

    def steps(self, epochs: float) -> int:
        """Whole optimizer steps in `epochs` epochs."""
        return epochs_to_steps(epochs, self.steps_per_epoch)


class ScheduleKind(NamedTuple):
    """A schedule: `make(run, **args)` returns the learning rate as a function of the step."""

    builder: Builder
    doc: str
    args: Mapping[str, Arg]

    @property
    def make(self) -> Callable[..., Any]:
        """The builder function (imports it, and with it optax, on first use)."""
        return resolve(self.builder)


def epochs_to_steps(epochs: float, steps_per_epoch: float) -> int:
    """Whole steps in `epochs` epochs (truncated as the references' `int(...)` does)."""
    return int(math.floor(epochs * steps_per_epoch + _STEP_TOLERANCE))


OPTIMIZERS: dict[str, Optimizer] = {
    "adamw": Optimizer(
        "flaxnets.optimizers.adamw",
        "Adam (optax.adam); with optimizer.weight_decay, AdamW. With epsilon_hat, Keras' Adam "
        "(TF-Vision's AdamWeightDecay).",
        {
            "b1": Arg(float, 0.9, "First-moment decay."),
            "b2": Arg(float, 0.999, "Second-moment decay."),
            "eps": Arg(float, 1e-8, "Epsilon in the denominator."),
            "epsilon_hat": Arg(bool, False, "Add eps to the un-corrected sqrt(v) as TF/Keras Adam does "
                                            "(\"epsilon hat\") instead of after bias correction as optax does."),
        },
    ),
    "rmsprop": Optimizer(
        "optax.rmsprop",
        "RMSProp (optax.rmsprop): the learning rate is applied before the momentum, as in TF1's "
        "RMSPropOptimizer; TF1 semantics are initial_scale 1.0 with eps_in_sqrt.",
        {
            "decay": Arg(float, 0.9, "Decay of the squared-gradient average."),
            "eps": Arg(float, 1e-8, "Epsilon, added to the squared-gradient average (eps_in_sqrt) or to its root."),
            "initial_scale": Arg(float, 0.0, "Starting value of the squared-gradient average (TF1: 1.0; Keras: 0)."),
            "eps_in_sqrt": Arg(bool, True, "Add eps inside the square root (TF) rather than after it (PyTorch)."),
            "centered": Arg(bool, False, "Divide by the gradient's variance instead of its mean square."),
            "momentum": Arg(Optional[float], None, "Momentum of the learning-rate-scaled update (None: none)."),
            "nesterov": Arg(bool, False, "Nesterov momentum."),
        },
        no_weight_decay="the TF references regularise RMSProp runs with optimizer.l2",
    ),
    "sgd": Optimizer(
        "optax.sgd",
        "SGD (optax.sgd), optionally with momentum.",
        {
            "momentum": Arg(Optional[float], None, "Momentum (None: plain SGD)."),
            "nesterov": Arg(bool, False, "Nesterov momentum."),
        },
    ),
}


# optax's cosine and exponential equal the TF formulas to float32 rounding over whole recipe runs
# (tests/train/test_schedules.py::test_optax_schedules_follow_the_tf_formulas_to_float_rounding_over_whole_runs).
_DECAY_EPOCHS = "Length of the cosine in epochs, counted from step 0 (None: train.epochs)."
_ALPHA = "Final value as a fraction of the peak (optax/TF `alpha`)."

SCHEDULES: dict[str, ScheduleKind] = {
    "constant": ScheduleKind("flaxnets.optimizers.constant",
                             "The peak learning rate throughout (optax.constant_schedule).", {}),
    "cosine": ScheduleKind(
        "flaxnets.optimizers.cosine",
        "Cosine decay from step 0 (optax.cosine_decay_schedule); the warmup replaces its first steps.",
        {"decay_epochs": Arg(Optional[float], None, _DECAY_EPOCHS), "alpha": Arg(float, 0.0, _ALPHA)},
    ),
    "warmup_cosine": ScheduleKind(
        "flaxnets.optimizers.warmup_cosine",
        "optax.warmup_cosine_decay_schedule: the cosine starts after the warmup (which ramps to the peak) "
        "and ends at decay_epochs.",
        {"decay_epochs": Arg(Optional[float], None, _DECAY_EPOCHS), "alpha": Arg(float, 0.0, _ALPHA)},
    ),
    "exponential": ScheduleKind(
        "flaxnets.optimizers.exponential",
        "peak * decay_rate ** (step / period) (optax.exponential_decay) from step 0; the warmup replaces "
        "its first steps.",
        {
            "decay_epochs": Arg(Optional[float], None, "Epochs per decay period (required)."),
            "decay_rate": Arg(float, 0.97, "Factor per decay period."),
            "staircase": Arg(bool, True, "Decay in whole periods rather than continuously."),
        },
    ),
}

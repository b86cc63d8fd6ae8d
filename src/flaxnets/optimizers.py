"""The optimizers and learning-rate schedules a config can name: one registry entry each.

`optimizer.name` picks an entry of `OPTIMIZERS` and `optimizer.<argument>` sets its arguments;
`schedule.name` / `schedule.<argument>` pick from `SCHEDULES` the same way. Each argument is declared
once, here, with its type, default and meaning: `flaxnets.config` checks `--set` and config.json
against it and `flaxnets recipes --keys` prints it. Adding an optimizer optax already has is one
entry, e.g.

    "lion": Optimizer(optax.lion, "Lion (optax.lion).", {
        "b1": Arg(float, 0.9, "Rate of the update's interpolation."),
        "b2": Arg(float, 0.99, "Decay of the momentum.")}),

(tests/train/test_optim.py holds each entry's arguments to the signature of the optax function it
calls). A schedule's `make` also gets the run (`ScheduleRun`) to turn epochs into steps:

    "polynomial": ScheduleKind(
        lambda run, power: tf_style_warmup(run, optax.polynomial_schedule(run.peak, 0.0, power, run.steps(run.epochs))),
        "Polynomial decay to 0 over the run (optax.polynomial_schedule).",
        {"power": Arg(float, 1.0, "Exponent of the decay.")}),
 What is not per optimizer stays explicit keys of `flaxnets.config.OptimizerConfig`, applied
by `flaxnets.train.optim`: L2 added to the gradient, decoupled weight decay, clipping, the masks by
parameter kind; likewise the peak, batch scaling and warmup of `ScheduleConfig`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from flaxnets.errors import UsageError
from flaxnets.text import plural

Schedule = Callable[[jnp.ndarray | int], jnp.ndarray]

# Epoch counts such as 218000/312 must not lose a step to floating-point rounding.
_STEP_TOLERANCE = 1e-6


class Arg(NamedTuple):
    """One argument of a registry entry: its config type, default and meaning."""

    type: Any
    default: Any
    meaning: str


class Optimizer(NamedTuple):
    """An optimizer: `make(learning_rate, **args)` returns the optax transformation, whose last step
    applies the learning rate (a schedule of the step count) and gives the negative update."""

    make: Callable[..., optax.GradientTransformation]
    doc: str
    args: Mapping[str, Arg]
    #: Why `optimizer.weight_decay` is refused with this optimizer (None: it is allowed).
    no_weight_decay: Optional[str] = None


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

    make: Callable[..., Schedule]
    doc: str
    args: Mapping[str, Arg]


def epochs_to_steps(epochs: float, steps_per_epoch: float) -> int:
    """Whole steps in `epochs` epochs (truncated as the references' `int(...)` does)."""
    return int(math.floor(epochs * steps_per_epoch + _STEP_TOLERANCE))


# ---------------------------------------------------------------------------------------------
# Optimizers


class ScaleByAdamKerasState(NamedTuple):
    """State of `scale_by_adam_keras`."""

    count: jnp.ndarray
    mu: Any
    nu: Any


def scale_by_adam_keras(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-7) -> optax.GradientTransformation:
    """Adam as TF/Keras compute it: `sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)`.

    Keras adds eps to the un-corrected `sqrt(v)` ("epsilon hat"); optax adds it after bias
    correction, and its `eps_root` goes inside the root, so optax has no equivalent. The two differ
    only while `1 - b2^t` is far from 1 (the first few thousand steps).
    """

    def init(params):
        return ScaleByAdamKerasState(
            count=jnp.zeros([], jnp.int32),
            mu=jax.tree.map(jnp.zeros_like, params),
            nu=jax.tree.map(jnp.zeros_like, params),
        )

    def update(updates, state, params=None):
        del params
        mu = jax.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: b2 * v + (1.0 - b2) * jnp.square(g), state.nu, updates)
        count = state.count + 1
        t = count.astype(jnp.float32)
        correction = jnp.sqrt(1.0 - b2**t) / (1.0 - b1**t)
        new_updates = jax.tree.map(lambda m, v: correction * m / (jnp.sqrt(v) + eps), mu, nu)
        return new_updates, ScaleByAdamKerasState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init, update)


def _adamw(learning_rate, b1: float, b2: float, eps: float, epsilon_hat: bool) -> optax.GradientTransformation:
    if not epsilon_hat:
        return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)
    return optax.chain(scale_by_adam_keras(b1, b2, eps), optax.scale_by_learning_rate(learning_rate))


OPTIMIZERS: dict[str, Optimizer] = {
    "adamw": Optimizer(
        _adamw,
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
        optax.rmsprop,
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
        optax.sgd,
        "SGD (optax.sgd), optionally with momentum.",
        {
            "momentum": Arg(Optional[float], None, "Momentum (None: plain SGD)."),
            "nesterov": Arg(bool, False, "Nesterov momentum."),
        },
    ),
}


# ---------------------------------------------------------------------------------------------
# Schedules


def tf_style_warmup(run: ScheduleRun, base: Schedule) -> Schedule:
    """`base` with its first `run.warmup_steps` replaced by a linear ramp from `warmup_start_lr` to
    the peak or to `base`'s own value at the end of the ramp (`warmup_target`), as the TF-TPU and
    TF-Vision references do: the decay keeps counting from step 0. Not optax's
    `warmup_exponential_decay_schedule` or `join_schedules`, which start the decay after the
    warmup (docs/RECIPES.md pitfall 3; tests/train/test_schedules.py shows the difference)."""
    if run.warmup_steps == 0:
        return base
    target = run.peak if run.warmup_target == "peak" else float(base(run.warmup_steps))
    start, steps = run.warmup_start_lr, run.warmup_steps

    def schedule(step):
        step_f = jnp.asarray(step, jnp.float32)
        ramp = start + (target - start) * step_f / steps
        return jnp.where(step_f < steps, ramp, base(step))

    return schedule


def _constant(run: ScheduleRun) -> Schedule:
    return tf_style_warmup(run, optax.constant_schedule(run.peak))


def _cosine_steps(run: ScheduleRun, decay_epochs: Optional[float], begin: int) -> int:
    decay_steps = run.steps(run.epochs if decay_epochs is None else decay_epochs)
    if decay_steps - begin <= 0:
        raise UsageError(
            f"schedule.decay_epochs={decay_epochs}: the cosine ({plural(decay_steps, 'step')}) must be longer "
            f"than the warmup ({plural(begin, 'step')})")
    return decay_steps


def _cosine(run: ScheduleRun, decay_epochs: Optional[float], alpha: float) -> Schedule:
    return tf_style_warmup(run, optax.cosine_decay_schedule(run.peak, _cosine_steps(run, decay_epochs, 0), alpha))


def _warmup_cosine(run: ScheduleRun, decay_epochs: Optional[float], alpha: float) -> Schedule:
    decay_steps = _cosine_steps(run, decay_epochs, run.warmup_steps)
    return optax.warmup_cosine_decay_schedule(run.warmup_start_lr, run.peak, run.warmup_steps, decay_steps,
                                              end_value=alpha * run.peak)


def _exponential(run: ScheduleRun, decay_epochs: Optional[float], decay_rate: float, staircase: bool) -> Schedule:
    if decay_epochs is None or decay_epochs <= 0:
        raise UsageError(f"schedule.decay_epochs={decay_epochs}: the exponential schedule needs a positive period")
    # The period in steps stays a real number (2.4 epochs of 625.57 steps in TF-TPU EfficientNet).
    base = optax.exponential_decay(run.peak, decay_epochs * run.steps_per_epoch, decay_rate, staircase=staircase)
    return tf_style_warmup(run, base)


# optax's cosine and exponential equal the TF formulas to float32 rounding over whole recipe runs
# (tests/train/test_schedules.py::test_optax_schedules_follow_the_tf_formulas_to_float_rounding_over_whole_runs).
_DECAY_EPOCHS = "Length of the cosine in epochs, counted from step 0 (None: train.epochs)."
_ALPHA = "Final value as a fraction of the peak (optax/TF `alpha`)."

SCHEDULES: dict[str, ScheduleKind] = {
    "constant": ScheduleKind(_constant, "The peak learning rate throughout (optax.constant_schedule).", {}),
    "cosine": ScheduleKind(
        _cosine,
        "Cosine decay from step 0 (optax.cosine_decay_schedule); the warmup replaces its first steps.",
        {"decay_epochs": Arg(Optional[float], None, _DECAY_EPOCHS), "alpha": Arg(float, 0.0, _ALPHA)},
    ),
    "warmup_cosine": ScheduleKind(
        _warmup_cosine,
        "optax.warmup_cosine_decay_schedule: the cosine starts after the warmup (which ramps to the peak) "
        "and ends at decay_epochs.",
        {"decay_epochs": Arg(Optional[float], None, _DECAY_EPOCHS), "alpha": Arg(float, 0.0, _ALPHA)},
    ),
    "exponential": ScheduleKind(
        _exponential,
        "peak * decay_rate ** (step / period) (optax.exponential_decay) from step 0; the warmup replaces "
        "its first steps.",
        {
            "decay_epochs": Arg(Optional[float], None, "Epochs per decay period (required)."),
            "decay_rate": Arg(float, 0.97, "Factor per decay period."),
            "staircase": Arg(bool, True, "Decay in whole periods rather than continuously."),
        },
    ),
}


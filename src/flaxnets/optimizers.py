"""The optax code the optimizer and schedule registry (`flaxnets.choices`) names: Keras'
epsilon-hat Adam, the TF-style warmup and the schedules' builders. `flaxnets.config` does not import
this module (it reads the JAX-free registry), so a config is read and checked without JAX; a run
imports it when it builds its optimizer and schedule (`entry.make`).

The registry's names are re-exported here (`OPTIMIZERS`, `SCHEDULES`, `Arg`, `Optimizer`,
`ScheduleKind`, `ScheduleRun`, `epochs_to_steps`): the same objects, so an entry added to
`flaxnets.optimizers.OPTIMIZERS` is one a config can name.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from flaxnets.choices import (OPTIMIZERS, SCHEDULES, Arg, Optimizer, ScheduleKind, ScheduleRun,  # noqa: F401
                              epochs_to_steps)
from flaxnets.errors import UsageError
from flaxnets.text import plural

Schedule = Callable[[jnp.ndarray | int], jnp.ndarray]


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


def adamw(learning_rate, b1: float, b2: float, eps: float, epsilon_hat: bool) -> optax.GradientTransformation:
    """The `adamw` entry: optax's Adam, or with `epsilon_hat` Keras' (decoupled decay is added by
    `flaxnets.train.optim`)."""
    if not epsilon_hat:
        return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)
    return optax.chain(scale_by_adam_keras(b1, b2, eps), optax.scale_by_learning_rate(learning_rate))


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


def constant(run: ScheduleRun) -> Schedule:
    """The `constant` entry."""
    return tf_style_warmup(run, optax.constant_schedule(run.peak))


def _cosine_steps(run: ScheduleRun, decay_epochs: Optional[float], begin: int) -> int:
    decay_steps = run.steps(run.epochs if decay_epochs is None else decay_epochs)
    if decay_steps - begin <= 0:
        raise UsageError(
            f"schedule.decay_epochs={decay_epochs}: the cosine ({plural(decay_steps, 'step')}) must be longer "
            f"than the warmup ({plural(begin, 'step')})")
    return decay_steps


def cosine(run: ScheduleRun, decay_epochs: Optional[float], alpha: float) -> Schedule:
    """The `cosine` entry: counted from step 0, the warmup replacing its first steps."""
    return tf_style_warmup(run, optax.cosine_decay_schedule(run.peak, _cosine_steps(run, decay_epochs, 0), alpha))


def warmup_cosine(run: ScheduleRun, decay_epochs: Optional[float], alpha: float) -> Schedule:
    """The `warmup_cosine` entry: optax's, the cosine starting after the warmup."""
    decay_steps = _cosine_steps(run, decay_epochs, run.warmup_steps)
    return optax.warmup_cosine_decay_schedule(run.warmup_start_lr, run.peak, run.warmup_steps, decay_steps,
                                              end_value=alpha * run.peak)


def exponential(run: ScheduleRun, decay_epochs: Optional[float], decay_rate: float, staircase: bool) -> Schedule:
    """The `exponential` entry: from step 0, the warmup replacing its first steps."""
    if decay_epochs is None or decay_epochs <= 0:
        raise UsageError(f"schedule.decay_epochs={decay_epochs}: the exponential schedule needs a positive period")
    # The period in steps stays a real number (2.4 epochs of 625.57 steps in TF-TPU EfficientNet).
    base = optax.exponential_decay(run.peak, decay_epochs * run.steps_per_epoch, decay_rate, staircase=staircase)
    return tf_style_warmup(run, base)

"""Learning-rate schedules stated in epochs, evaluated per optimizer step (counted from 0).

The shapes are optax's (`flaxnets.optimizers.SCHEDULES`); this module turns epochs into steps and
scales the peak with the batch. Conventions (see `flaxnets.config.ScheduleConfig`): the decay of
`cosine` and `exponential` counts from step 0 and a warmup only *replaces* the first steps, as in
the TF-TPU and TF-Vision references (`flaxnets.optimizers.tf_style_warmup`). optax's
`warmup_exponential_decay_schedule` instead starts decaying after the warmup, which leaves the
learning rate about 6% high for a whole EfficientNet run (docs/RECIPES.md pitfall 3).
"""

from __future__ import annotations

import jax.numpy as jnp

from flaxnets.config import Config
from flaxnets.errors import UsageError
from flaxnets.optimizers import SCHEDULES, Schedule, ScheduleRun, epochs_to_steps


def steps_per_epoch(num_train_examples: int, global_batch_size: int, mode: str = "floor") -> float:
    """Optimizer steps per epoch: floor(num_train / batch), or the real quotient for mode "real"."""
    if num_train_examples <= 0:
        raise UsageError(f"num_train_examples={num_train_examples}: expected a positive integer")
    if mode == "floor":
        steps = num_train_examples // global_batch_size
        if steps == 0:
            raise UsageError(
                f"train.global_batch_size={global_batch_size} exceeds the {num_train_examples} "
                "training examples: an epoch would have no step"
            )
        return steps
    if mode == "real":
        return num_train_examples / global_batch_size
    raise UsageError(f"schedule.steps_per_epoch_mode={mode!r}: expected 'floor' or 'real'")


#: A recipe's `data.num_train_examples` within this fraction of the data's count describes the
#: same data set (a copy with a few files missing or unreadable): the recipe's count is kept so
#: the schedule is the reference's step for step. Further off, the data is another data set.
SAME_DATA_TOLERANCE = 0.01


def schedule_examples(configured: int | None, found: int) -> tuple[int, str | None]:
    """(the training-set size the schedule counts epochs of, a one-line note or None).

    `configured` is `data.num_train_examples` (None: count the data), `found` the number of
    training examples in the data. A fine-tune of a published recipe on other data counts
    epochs of its own data: `train.epochs=3` means three passes over it, whatever count the
    recipe was written for. Within `SAME_DATA_TOLERANCE` the recipe's count is kept.
    """
    if configured is None or configured == found:
        return found, None
    if abs(found - configured) <= SAME_DATA_TOLERANCE * configured:
        return configured, (
            f"data: {found:,} training examples found, the recipe's data.num_train_examples is "
            f"{configured:,} (within 1%: the same data set); the schedule counts epochs of {configured:,} "
            f"(--set data.num_train_examples=none to count the {found:,} found)")
    return found, (
        f"data: {found:,} training examples found, not the recipe's data.num_train_examples="
        f"{configured:,}; the schedule counts epochs of the {found:,} found, so train.epochs is passes "
        f"over this data (for the recipe's length, scale train.epochs by {configured:,} / {found:,})")


def config_steps_per_epoch(config: Config, num_train_examples: int) -> float:
    """`steps_per_epoch` for this config's batch and `schedule.steps_per_epoch_mode`."""
    return steps_per_epoch(num_train_examples, config.train.global_batch_size, config.schedule.steps_per_epoch_mode)


def total_steps(config: Config, num_train_examples: int) -> int:
    """Optimizer steps of the whole run: train.epochs converted with steps_per_epoch."""
    return epochs_to_steps(config.train.epochs, config_steps_per_epoch(config, num_train_examples))


def peak_lr(config: Config) -> float:
    """base_lr scaled linearly by global_batch_size / reference_batch (no scaling when None)."""
    s = config.schedule
    if s.reference_batch is None:
        return s.base_lr
    return s.base_lr * config.train.global_batch_size / s.reference_batch


def build_schedule(config: Config, num_train_examples: int) -> Schedule:
    """The learning rate as a function of the optimizer step (int, array or traced int), float32 of
    the step's shape: the `flaxnets.optimizers.SCHEDULES` entry `schedule.name` with its arguments.

    `num_train_examples` is the training-set size epochs count (`schedule_examples`).
    """
    s = config.schedule
    spe = config_steps_per_epoch(config, num_train_examples)
    run = ScheduleRun(peak=peak_lr(config), steps_per_epoch=spe, epochs=config.train.epochs,
                      warmup_steps=epochs_to_steps(s.warmup_epochs, spe), warmup_start_lr=s.warmup_start_lr,
                      warmup_target=s.warmup_target)
    schedule = SCHEDULES[s.name].make(run, **s.args)

    def learning_rate(step):
        # optax's constant schedule returns a Python float whatever the step.
        return jnp.broadcast_to(jnp.asarray(schedule(step), jnp.float32), jnp.shape(step))

    return learning_rate

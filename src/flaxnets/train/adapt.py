"""A recipe adapted to the data it runs on, as the schedule already counts epochs of this data
(`flaxnets.train.schedules.schedule_examples`).

A published recipe is written for its data set: ImageNet's 1,000 classes, a batch of thousands
split over 32 replicas, a run of hundreds of thousands of steps. Run as written on a folder of
one's own photos, four of its values go wrong without an error:

- `model.num_classes`: 1,000 outputs for 4 classes; the data's class count is used.
- `model.bn_momentum`: BatchNorm's running statistics (Keras convention, moving = m * moving +
  (1 - m) * batch, `flaxnets.models.layers.BatchNorm`) average over about 1 / (1 - m) steps:
  333 for the recipes' 0.997. A run of tens of steps leaves them near their initial values, and
  evaluation, which uses them, stays at chance while the training loss falls.
- `ema.decay` without `ema.dynamic_decay`: the weight average starts at the initial weights and
  likewise averages over 1 / (1 - decay) steps (10,000 for 0.9999). The dynamic decay,
  min(decay, (1 + t) / (10 + t)), already averages over about the last t / 9 steps, so it is left.
- `model.bn_group_size` larger than the micro-batch: the reference's per-replica statistics over
  128 examples cannot be taken from a batch of 16; the group becomes the whole micro-batch. A
  group that does not divide a larger micro-batch is an error at validation
  (`flaxnets.config.Config.validate`) naming values that work.

The averaging rule: an average may span at most a tenth of the run, 1 / (1 - m) <= n / 10 for n
updates (BatchNorm and the EMA both update once per optimizer step). Then the initial value keeps
a weight of m ** n ~ exp(-10) by the end, and the average covers the last tenth of the run, whose
weights are near the final ones; the published ImageNet runs average over far less (333 of
312,000 steps). A slower value becomes 1 - 10 / n, with 10 / n rounded up to two significant
digits and never below `MIN_DECAY`.

`adapt_to_data` is a function of the config, the data's class count and the run's length only,
so a resumed run adapts the same way and its WORKDIR/config.json (the adapted config) compares
equal. `train.adapt_to_data=false` (`SWITCH`) keeps a recipe verbatim.
"""

from __future__ import annotations

import dataclasses
import math

from flaxnets.config import Config
from flaxnets.errors import FlaxnetsError
from flaxnets.models import get_spec

#: The config key that turns adaptation off.
SWITCH = "train.adapt_to_data"
#: An average spans at most 1 / RUN_SHARE of the run's updates.
RUN_SHARE = 10
#: The slowest-forgetting decay is not pushed below this (an average over ~2 steps) in runs of
#: under 20 steps, where 1 - 10 / n would be meaningless.
MIN_DECAY = 0.5


def averaging_decay(decay: float, updates: int) -> float | None:
    """The decay (momentum) to use instead of `decay` for an average updated `updates` times, or
    None when `decay` already averages over at most a tenth of them (see the module docstring)."""
    if updates <= 0 or (1.0 - decay) * updates >= RUN_SHARE - 1e-9:
        return None
    share = RUN_SHARE / updates
    scale = 10.0 ** (1 - math.floor(math.log10(share)))  # two significant digits
    adapted = max(MIN_DECAY, round(1.0 - math.ceil(share * scale - 1e-9) / scale, 12))
    return adapted if adapted < decay else None


def _horizon(decay: float) -> str:
    return f"~{1.0 / (1.0 - decay):,.0f}"


def adapt_to_data(config: Config, *, data_classes: int | None, num_steps: int) -> tuple[Config, list[str]]:
    """(`config` adapted to the data and the run's length, one "adapted: ..." line per change).

    `data_classes` is the training data's class count (None: unknown, kept), `num_steps` the
    run's optimizer steps. With `train.adapt_to_data` false the config is returned unchanged,
    except that a model with fewer outputs than the data has classes is an error (its labels
    would fall outside the classifier).
    """
    m, ema = config.model, config.ema
    if not config.train.adapt_to_data:
        if data_classes is not None and data_classes > m.num_classes:
            raise FlaxnetsError(
                f"model.num_classes={m.num_classes} but the training data has {data_classes} classes; "
                f"set model.num_classes={data_classes} (or {SWITCH}=true to take the data's count)")
        return config, []
    keep = f"{SWITCH}=false keeps"
    model_changes, ema_changes, lines = {}, {}, []

    if data_classes is not None and data_classes != m.num_classes:
        model_changes["num_classes"] = data_classes
        lines.append(f"adapted: model.num_classes {m.num_classes} -> {data_classes} (the training data's "
                     f"class folders); {keep} {m.num_classes}")

    momentum = m.bn_momentum if m.bn_momentum is not None else get_spec(m.name).bn_momentum
    new = averaging_decay(momentum, num_steps)
    if new is not None:
        model_changes["bn_momentum"] = new
        lines.append(f"adapted: model.bn_momentum {momentum:g} -> {new:g}: {momentum:g} averages BatchNorm "
                     f"statistics over {_horizon(momentum)} steps and this run has {num_steps:,} (evaluation would "
                     f"see statistics weighted toward the run's start); {keep} {momentum:g}")

    if ema.decay is not None and not ema.dynamic_decay:
        updates = num_steps - ema.start_step  # the average copies the weights until start_step
        new = averaging_decay(ema.decay, updates)
        if new is not None:
            ema_changes["decay"] = new
            lines.append(f"adapted: ema.decay {ema.decay:g} -> {new:g}: {ema.decay:g} averages the weights over "
                         f"{_horizon(ema.decay)} steps and this run averages {updates:,} (the average would "
                         f"lean on the initial weights); {keep} {ema.decay:g}")

    micro = config.train.micro_batch_size
    if m.bn_group_size is not None and m.bn_group_size > micro:
        model_changes["bn_group_size"] = micro
        lines.append(f"adapted: model.bn_group_size {m.bn_group_size} -> {micro}: the micro-batch has "
                     f"{micro} examples (train.global_batch_size / train.grad_accum_steps), fewer than a "
                     f"group; {keep} {m.bn_group_size} (and then needs a micro-batch that is a multiple of it)")

    if not lines:
        return config, []
    adapted = dataclasses.replace(config, model=dataclasses.replace(m, **model_changes),
                                  ema=dataclasses.replace(ema, **ema_changes))
    return adapted.validate(), lines

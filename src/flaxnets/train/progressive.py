"""Progressive learning: the stages of a run as a pure function of the config and the step.

google/automl efficientnetv2/main.py (the `config.train.stages` branch of `main`) trains stage
`stage` of `total_stages` up to `max_steps = int(ratio * train_steps)` with
`ratio = float(stage + 1) / float(total_stages)`, at
`image_size = int(ibase + (input_image_size - ibase) * ratio)` with
`ibase = config.data.ibase or (input_image_size / 2)`, and with RandAugment magnitude, Mixup and
CutMix alpha `np.linspace(min, max, total_stages)[stage]` (`ram_list`, `mixup_list`,
`cutmix_list`). `stage_plan` computes the same numbers; the stage of a step depends on nothing
else, so a resumed run is in the stage, at the size and with the regularisation an
uninterrupted one is at that step. The reference computes a dropout list too and then deletes
it (`del dp_list`; `# config.model.dropout_rate = dp_list[stage]`): `progressive.dropout_rate`
is there for the paper's Table 6 schedule and the recipes leave it off.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import numpy as np

from flaxnets.config import Config
from flaxnets.errors import UsageError

#: The smallest image size a stage may train at: five stride-2 reductions (the zoo's networks
#: all reduce by 32) leave a 1x1 map.
MIN_STAGE_IMAGE_SIZE = 32


@dataclass(frozen=True)
class Stage:
    """One stage: steps [start_step, end_step) (counted from 0, so the first optimizer step of
    the stage is start_step + 1) and what it trains with."""

    index: int
    start_step: int
    end_step: int
    image_size: int
    randaugment_magnitude: float
    mixup_alpha: float
    cutmix_alpha: float
    dropout_rate: Optional[float]

    def record(self) -> dict:
        """What metrics.jsonl logs when the stage begins."""
        out = {"stage": self.index, "stage_end_step": self.end_step, "image_size": self.image_size,
               "randaugment_magnitude": self.randaugment_magnitude, "mixup_alpha": self.mixup_alpha,
               "cutmix_alpha": self.cutmix_alpha}
        if self.dropout_rate is not None:
            out["dropout_rate"] = self.dropout_rate
        return out


def _span(values, fallback: float, stages: int) -> list[float]:
    if values is None:
        return [float(fallback)] * stages
    return [float(v) for v in np.linspace(values[0], values[1], stages)]


def stage_plan(config: Config, num_steps: int, final_image_size: int) -> tuple[Stage, ...]:
    """The run's stages: one stage of every step at `final_image_size` (the run's resolution)
    when `config.progressive.stages` is None, else the reference's stages (module docstring).
    A stage size below `MIN_STAGE_IMAGE_SIZE`, or a stage of no steps, is a one-line UsageError."""
    p, d = config.progressive, config.data
    stages = p.stages or 1
    final = p.final_image_size or final_image_size
    if p.stages is None:
        return (Stage(0, 0, num_steps, final, d.randaugment_magnitude, d.mixup_alpha, d.cutmix_alpha,
                      config.model.dropout_rate),)
    base = p.base_image_size or final / 2
    magnitude = _span(p.randaugment_magnitude, d.randaugment_magnitude, stages)
    mixup = _span(p.mixup_alpha, d.mixup_alpha, stages)
    cutmix = _span(p.cutmix_alpha, d.cutmix_alpha, stages)
    dropout = (_span(p.dropout_rate, 0.0, stages) if p.dropout_rate is not None
               else [config.model.dropout_rate] * stages)
    plan, start = [], 0
    for stage in range(stages):
        ratio = float(stage + 1) / float(stages)
        end = int(ratio * num_steps)
        size = int(base + (final - base) * ratio)
        if size < MIN_STAGE_IMAGE_SIZE:
            raise UsageError(f"progressive.base_image_size={p.base_image_size or 'none'}: stage {stage} would "
                             f"train at {size} pixels; expected every stage at least {MIN_STAGE_IMAGE_SIZE} "
                             "(the networks reduce by 32)")
        if end <= start:
            raise UsageError(f"progressive.stages={stages}: stage {stage} would have no step of the run's "
                             f"{num_steps}; expected at most {max(num_steps, 1)} stages")
        plan.append(Stage(stage, start, end, size, magnitude[stage], mixup[stage], cutmix[stage], dropout[stage]))
        start = end
    return tuple(plan)


def stage_at(plan: tuple[Stage, ...], step: int) -> Stage:
    """The stage that trains step `step` + 1 (`step` steps done); past the end, the last."""
    for stage in plan:
        if step < stage.end_step:
            return stage
    return plan[-1]


def stage_config(config: Config, stage: Stage) -> Config:
    """`config` as `stage` trains: its RandAugment magnitude, Mixup / CutMix alphas and dropout
    rate in `data` and `model` (the image size is the stage's `image_size`, and evaluation keeps
    `config`'s own)."""
    data = dataclasses.replace(config.data, randaugment_magnitude=stage.randaugment_magnitude,
                               mixup_alpha=stage.mixup_alpha, cutmix_alpha=stage.cutmix_alpha)
    model = dataclasses.replace(config.model, dropout_rate=stage.dropout_rate)
    return dataclasses.replace(config, data=data, model=model)

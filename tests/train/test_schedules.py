"""Schedules: exact values against the reference formulas written out here."""

import math

import numpy as np
import optax
import pytest

from flaxnets.config import Config, ScheduleConfig, TrainConfig, apply_overrides
from flaxnets.errors import UsageError
from flaxnets.train.schedules import build_schedule, peak_lr, steps_per_epoch, total_steps

IMAGENET = 1_281_167


def _lr(schedule, step):
    return float(schedule(step))


def _check(schedule, reference, steps, rel, abs=0.0):
    """The schedule evaluated on all `steps` at once equals the reference formula at each."""
    got = np.asarray(schedule(np.asarray(steps)))
    expected = np.array([reference(s) for s in steps])
    np.testing.assert_allclose(got, expected, rtol=rel, atol=abs, err_msg=str(steps))


def test_steps_per_epoch_floor_and_real():
    assert steps_per_epoch(IMAGENET, 4096) == 312
    assert steps_per_epoch(IMAGENET, 2048) == 625
    assert steps_per_epoch(IMAGENET, 1024) == 1251
    assert steps_per_epoch(IMAGENET, 2048, "real") == pytest.approx(625.569824, rel=1e-9)
    with pytest.raises(UsageError, match="no step"):
        steps_per_epoch(100, 256)


def test_efficientnet_tpu_exponential_with_warmup_replacing_first_steps():
    """TF-TPU: lr = 0.128 * 0.97**floor(step / (2.4 * spe)); a ramp 0.128 * step / warmup replaces
    the first 5 epochs; spe = 1281167 / 2048 as a real number."""
    config = Config(
        schedule=ScheduleConfig(name="exponential", base_lr=0.016, reference_batch=256, warmup_epochs=5,
                                warmup_target="peak", decay_epochs=2.4, decay_rate=0.97, staircase=True,
                                steps_per_epoch_mode="real"),
        train=TrainConfig(global_batch_size=2048, epochs=350),
    )
    schedule = build_schedule(config, IMAGENET)
    spe = IMAGENET / 2048
    warmup = int(5 * spe)
    assert warmup == 3127
    period = 2.4 * spe

    def reference(step):
        if step < warmup:
            return 0.128 * step / warmup
        return 0.128 * 0.97 ** math.floor(step / period)

    # float32, as in TF: 0.97**66 carries a few ulps of rounding.
    _check(schedule, reference, (0, 1, 1000, 3126, 3127, 4504, 4505, 100_000, 218_948), rel=1e-5)
    # Right after the warmup the decay has already run for two periods (pitfall 3).
    assert _lr(schedule, 3127) == pytest.approx(0.128 * 0.97**2, rel=1e-6)
    # optax's warmup_exponential_decay_schedule would still be at the peak there.
    late = optax.warmup_exponential_decay_schedule(0.0, 0.128, warmup, int(period), 0.97, staircase=True)
    assert float(late(3127)) == pytest.approx(0.128)
    assert total_steps(config, IMAGENET) == 218_949


def test_mobilenet_v3_small_tfvision_warmup_to_schedule_value():
    """TF-Vision: 0.01 * 0.99**floor(step / 936), linear warmup from 0.001 over 1560 steps up to the
    schedule's value at step 1560."""
    config = Config(
        schedule=ScheduleConfig(name="exponential", base_lr=0.01, reference_batch=4096, warmup_epochs=5,
                                warmup_start_lr=0.001, warmup_target="schedule", decay_epochs=3,
                                decay_rate=0.99, staircase=True),
        train=TrainConfig(global_batch_size=4096, epochs=1000),
    )
    schedule = build_schedule(config, IMAGENET)
    end = 0.01 * 0.99 ** math.floor(1560 / 936)

    def reference(step):
        if step < 1560:
            return 0.001 + (end - 0.001) * step / 1560
        return 0.01 * 0.99 ** math.floor(step / 936)

    _check(schedule, reference, (0, 1, 780, 1559, 1560, 1871, 1872, 50_000, 311_999), rel=1e-5)


def test_smooth_exponential_decay():
    config = Config(schedule=ScheduleConfig(name="exponential", base_lr=0.1, decay_epochs=2, decay_rate=0.5,
                                            staircase=False),
                    train=TrainConfig(global_batch_size=100, epochs=10))
    schedule = build_schedule(config, 1000)  # 10 steps per epoch, period 20 steps
    for step in (0, 5, 20, 33):
        assert _lr(schedule, step) == pytest.approx(0.1 * 0.5 ** (step / 20), rel=1e-6)


def test_cosine_counts_from_step_zero_over_whole_run():
    config = Config(schedule=ScheduleConfig(name="cosine", base_lr=0.004, reference_batch=4096, alpha=0.0),
                    train=TrainConfig(global_batch_size=4096, epochs=700))
    schedule = build_schedule(config, IMAGENET)
    total = 700 * 312
    _check(schedule, lambda step: 0.004 * 0.5 * (1 + math.cos(math.pi * min(step, total) / total)),
           (0, 1, 54_600, 109_200, total - 1, total, total + 50), rel=1e-5, abs=1e-9)


def test_cosine_with_tfvision_warmup_and_alpha():
    config = Config(schedule=ScheduleConfig(name="cosine", base_lr=1.0, warmup_epochs=1, warmup_target="schedule",
                                            alpha=0.1),
                    train=TrainConfig(global_batch_size=10, epochs=10))
    schedule = build_schedule(config, 100)  # 10 steps per epoch, 100 steps

    def cosine(step):
        return 0.9 * 0.5 * (1 + math.cos(math.pi * step / 100)) + 0.1

    assert _lr(schedule, 5) == pytest.approx(cosine(10) * 5 / 10, rel=1e-6)
    assert _lr(schedule, 10) == pytest.approx(cosine(10), rel=1e-6)
    assert _lr(schedule, 100) == pytest.approx(0.1, rel=1e-6)


def test_warmup_cosine_matches_optax_semantics():
    config = Config(schedule=ScheduleConfig(name="warmup_cosine", base_lr=0.004, reference_batch=4096,
                                            warmup_epochs=5),
                    train=TrainConfig(global_batch_size=4096, epochs=500))
    schedule = build_schedule(config, IMAGENET)
    ref = optax.warmup_cosine_decay_schedule(0.0, 0.004, 5 * 312, 500 * 312, 0.0)
    steps = np.array([0, 100, 1559, 1560, 1561, 80_000, 155_999, 156_000])
    np.testing.assert_allclose(np.asarray(schedule(steps)), np.asarray(ref(steps)), rtol=1e-5, atol=1e-9)


def test_constant_and_batch_scaling():
    config = apply_overrides(Config(), ["schedule.name=constant", "schedule.base_lr=0.1",
                                        "schedule.reference_batch=256", "train.global_batch_size=1024"])
    assert peak_lr(config) == pytest.approx(0.4)
    schedule = build_schedule(config, 10_000)
    assert np.allclose(np.asarray(schedule(np.arange(5))), 0.4)


def test_epochs_follow_the_batch_size():
    base = Config(schedule=ScheduleConfig(name="exponential", base_lr=0.016, reference_batch=256,
                                          warmup_epochs=5, decay_epochs=2.4),
                  train=TrainConfig(global_batch_size=2048, epochs=350))
    half = apply_overrides(base, ["train.global_batch_size=1024"])
    # Same epoch positions, twice the steps, half the peak.
    assert _lr(build_schedule(half, IMAGENET), 5 * 1251 + 10) == pytest.approx(
        0.064 * 0.97 ** math.floor((5 * 1251 + 10) / (2.4 * 1251)), rel=1e-6)
    assert total_steps(half, IMAGENET) == 350 * 1251


def test_cosine_shorter_than_warmup_is_rejected():
    config = Config(schedule=ScheduleConfig(name="warmup_cosine", warmup_epochs=5, decay_epochs=4),
                    train=TrainConfig(global_batch_size=10, epochs=10))
    with pytest.raises(UsageError, match="longer than the warmup"):
        build_schedule(config, 100)


@pytest.mark.parametrize("name", ["mobilenet_v3_large_tfvision", "efficientnet_b0_tpu", "mobilenet_v3_small_tfvision"])
def test_optax_schedules_follow_the_tf_formulas_to_float_rounding_over_whole_runs(name):
    """The shapes are optax's (cosine_decay_schedule, exponential_decay) under our TF-style warmup.
    At every step of these runs they are within 5e-7 of the peak of the float64 formulas (measured:
    2.0e-7, 3.9e-7, 3.7e-7). The cosine replaced our own cosine, from which it differs by float
    rounding only (at most 1.7e-7 of the peak); the exponential gives our own values bit for bit
    except at step 175,660 of EfficientNet-B0 (step / period = 116.9999956), where ours floored to
    117 in float32 and optax, as the formula, to 116."""
    from flaxnets.recipes import load_recipe

    config = load_recipe(name)
    s, peak = config.schedule, peak_lr(config)
    spe = steps_per_epoch(IMAGENET, config.train.global_batch_size, s.steps_per_epoch_mode)
    steps = np.arange(total_steps(config, IMAGENET) + 1)
    warmup = math.floor(s.warmup_epochs * spe + 1e-6)
    if s.name == "cosine":
        length = math.floor((s.decay_epochs or config.train.epochs) * spe + 1e-6)

        def base(t):
            return peak * ((1 - s.alpha) * 0.5 * (1 + np.cos(np.pi * np.minimum(t, length) / length)) + s.alpha)
    else:
        def base(t):
            return peak * s.decay_rate ** np.floor(t / (s.decay_epochs * spe))
    target = peak if s.warmup_target == "peak" else base(warmup)
    expected = np.where(steps < warmup, s.warmup_start_lr + (target - s.warmup_start_lr) * steps / warmup,
                        base(steps.astype(np.float64)))
    got = np.asarray(build_schedule(config, IMAGENET)(steps), np.float64)
    assert np.abs(got - expected).max() <= 5e-7 * peak


def test_an_optax_schedule_is_one_registry_entry(monkeypatch):
    """The polynomial example of flaxnets.optimizers' docstring: settable, documented and built
    (with the TF-style warmup) with no other change."""
    import optax

    from flaxnets.config import describe_choices
    from flaxnets.optimizers import SCHEDULES, Arg, ScheduleKind, tf_style_warmup

    monkeypatch.setitem(SCHEDULES, "polynomial", ScheduleKind(
        lambda run, power: tf_style_warmup(run, optax.polynomial_schedule(run.peak, 0.0, power, run.steps(run.epochs))),
        "Polynomial decay to 0 over the run.", {"power": Arg(float, 1.0, "Exponent of the decay.")}))
    config = apply_overrides(Config(train=TrainConfig(global_batch_size=10, epochs=10)),
                             ["schedule.name=polynomial", "schedule.power=2", "schedule.base_lr=1",
                              "schedule.warmup_epochs=1"])
    assert any(c.name == "polynomial" and c.args[0].key == "schedule.power" for c in describe_choices())
    schedule = build_schedule(config, 100)  # 10 steps per epoch, 100 steps
    assert _lr(schedule, 5) == pytest.approx(0.5, rel=1e-6)  # the warmup ramp to the peak
    assert _lr(schedule, 50) == pytest.approx((1 - 50 / 100) ** 2, rel=1e-6)  # counted from step 0


def test_schedule_counts_the_data_unless_the_recipe_describes_the_same_data_set():
    from flaxnets.train.schedules import schedule_examples

    assert schedule_examples(None, 200) == (200, None)
    assert schedule_examples(1_281_167, 1_281_167) == (1_281_167, None)
    # A copy of ImageNet with a few unreadable files: the reference's count, said once.
    count, note = schedule_examples(1_281_167, 1_281_160)
    assert count == 1_281_167 and "1,281,160" in note and "data.num_train_examples=none" in note
    # Other data (a fine-tune, a subset): its own epochs, with both numbers and the key.
    count, note = schedule_examples(1_281_167, 200)
    assert count == 200 and "1,281,167" in note and "200 found" in note and "train.epochs" in note

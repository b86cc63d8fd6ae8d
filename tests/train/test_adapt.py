"""A published recipe adapts to the data and run it is given (`flaxnets.train.adapt`): the data's
class count, a BatchNorm momentum or non-dynamic EMA decay that averages over at most a tenth of
the run, a BatchNorm group no larger than the micro-batch; each change is one line naming the
switch that keeps the recipe verbatim. Pure config arithmetic: no model is built."""

import pytest

from flaxnets.config import apply_overrides
from flaxnets.errors import FlaxnetsError, UsageError
from flaxnets.recipes import load_recipe
from flaxnets.train.adapt import adapt_to_data, averaging_decay

RECIPE = "mobilenet_v3_small_tfvision"  # ImageNet's 1000 classes, bn_momentum 0.997, bn_group_size 128


def _recipe(*overrides):
    return apply_overrides(load_recipe(RECIPE), list(overrides))


def test_the_class_count_becomes_the_datas():
    config, lines = adapt_to_data(_recipe(), data_classes=4, num_steps=1_000_000)
    assert config.model.num_classes == 4
    assert lines == ["adapted: model.num_classes 1000 -> 4 (the training data's class folders); "
                     "train.adapt_to_data=false keeps 1000"]
    assert adapt_to_data(_recipe(), data_classes=1000, num_steps=1_000_000) == (_recipe(), [])
    assert adapt_to_data(_recipe(), data_classes=None, num_steps=1_000_000)[0].model.num_classes == 1000


def test_a_bn_momentum_too_slow_for_the_run_averages_over_a_tenth_of_it():
    # 0.997 averages over ~333 steps; a run of 225 gets 1 - 10/225 rounded up to 0.955 (~22 steps).
    config, lines = adapt_to_data(_recipe(), data_classes=1000, num_steps=225)
    assert config.model.bn_momentum == 0.955
    assert len(lines) == 1 and lines[0].startswith("adapted: model.bn_momentum 0.997 -> 0.955: 0.997 averages")
    assert "~333 steps and this run has 225" in lines[0] and "train.adapt_to_data=false keeps 0.997" in lines[0]
    # The published length (312,000 steps) keeps the recipe's value; an adapted config is a fixed point.
    assert adapt_to_data(_recipe(), data_classes=1000, num_steps=312_000)[1] == []
    assert adapt_to_data(config, data_classes=1000, num_steps=225) == (config, [])
    # The horizon 1/(1-m) is at most a tenth of the updates afterwards, and never faster than needed.
    for steps in (25, 42, 99, 100, 225, 3333, 50_000):
        new = averaging_decay(0.9999, steps)
        assert 1 / (1 - new) <= max(steps / 10, 2) + 1e-9
        assert new >= 1 - 1.1 * 10 / steps or new == 0.5  # 10/steps rounded up to 2 digits
    assert averaging_decay(0.9, 13) == 0.5  # the floor: a run under 20 steps


def test_the_models_default_momentum_is_adapted_when_the_recipe_leaves_it():
    config, lines = adapt_to_data(_recipe("model.bn_momentum=none"), data_classes=1000, num_steps=225)
    assert config.model.bn_momentum == 0.955 and "model.bn_momentum 0.99 -> 0.955" in lines[0]


def test_a_non_dynamic_ema_decay_is_adapted_and_a_dynamic_one_kept():
    config, lines = adapt_to_data(_recipe("ema.dynamic_decay=false", "model.bn_momentum=0.9"),
                                  data_classes=1000, num_steps=500)
    assert config.ema.decay == 0.98
    assert lines == ["adapted: ema.decay 0.9999 -> 0.98: 0.9999 averages the weights over ~10,000 steps and "
                     "this run averages 500 (the average would lean on the initial weights); "
                     "train.adapt_to_data=false keeps 0.9999"]
    # The dynamic decay (1 + t) / (10 + t) already averages within the run.
    assert adapt_to_data(_recipe("model.bn_momentum=0.9"), data_classes=1000, num_steps=500)[1] == []
    # The average copies the weights until ema.start_step: it averages the steps after it.
    late = adapt_to_data(_recipe("ema.dynamic_decay=false", "ema.start_step=400", "model.bn_momentum=0.9"),
                         data_classes=1000, num_steps=500)[0]
    assert late.ema.decay == 0.9


def test_a_bn_group_larger_than_the_micro_batch_becomes_the_micro_batch():
    config, lines = adapt_to_data(_recipe("train.global_batch_size=16"), data_classes=1000, num_steps=10**6)
    assert config.model.bn_group_size == 16
    assert lines[0].startswith("adapted: model.bn_group_size 128 -> 16: the micro-batch has 16 examples")
    accumulated = adapt_to_data(_recipe("train.global_batch_size=256", "train.grad_accum_steps=4"),
                                data_classes=1000, num_steps=10**6)[0]
    assert accumulated.model.bn_group_size == 64
    assert adapt_to_data(_recipe("train.global_batch_size=256"), data_classes=1000, num_steps=10**6)[1] == []


def test_a_group_that_cannot_be_adapted_stops_at_once_naming_values_that_work():
    # Larger than the micro-batch with adaptation off, or not dividing a larger micro-batch.
    with pytest.raises(UsageError, match=r"^model.bn_group_size=128: expected a positive divisor of the 16 "
                                         r".*; set it to 16 or 8, or none for statistics over the whole micro-batch$"):
        _recipe("train.global_batch_size=16", "train.adapt_to_data=false")
    with pytest.raises(UsageError, match=r"model.bn_group_size=48: .* of the 64 .*; set it to 32 or 16, or none"):
        _recipe("train.global_batch_size=64", "model.bn_group_size=48")


def test_adaptation_off_keeps_the_recipe_verbatim():
    config = _recipe("train.adapt_to_data=false")
    assert adapt_to_data(config, data_classes=4, num_steps=225) == (config, [])
    # Except that labels beyond the classifier would be silently wrong: an error naming the fix.
    with pytest.raises(FlaxnetsError, match=r"^model.num_classes=4 but the training data has 10 classes; "
                                            r"set model.num_classes=10"):
        adapt_to_data(_recipe("train.adapt_to_data=false", "model.num_classes=4"), data_classes=10, num_steps=225)


def test_every_change_at_once_is_a_valid_config():
    config, lines = adapt_to_data(_recipe("train.global_batch_size=16", "ema.dynamic_decay=false"),
                                  data_classes=4, num_steps=200)
    m = config.model
    assert (m.num_classes, m.bn_momentum, m.bn_group_size, config.ema.decay) == (4, 0.95, 16, 0.95)
    assert [line.split(" ")[1] for line in lines] == ["model.num_classes", "model.bn_momentum", "ema.decay",
                                                      "model.bn_group_size"]

"""The Mixup/CutMix keys reach the batch mixer: data.mix_prob and data.mix_switch_prob."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxnets.config import Config, DataConfig
from flaxnets.errors import UsageError
from flaxnets.train.from_config import mix_from_config


def _mixed_fraction(prob, switch_prob=0.5, trials=64):
    config = Config(data=DataConfig(mixup_alpha=0.8, cutmix_alpha=1.0, mix_prob=prob,
                                    mix_switch_prob=switch_prob))
    mix = mix_from_config(config)
    images = jnp.arange(4 * 8 * 8 * 3, dtype=jnp.float32).reshape(4, 8, 8, 3)
    labels = jax.nn.one_hot(jnp.arange(4), 4)
    mixed = jax.jit(jax.vmap(lambda key: mix(images, labels, key)[1]))(
        jax.random.split(jax.random.key(0), trials))
    return float(np.mean(np.any(np.asarray(mixed) != np.asarray(labels), axis=(1, 2))))


def test_mix_prob_is_the_probability_that_a_batch_is_mixed():
    assert _mixed_fraction(0.0) == 0.0
    assert 0.05 < _mixed_fraction(0.3) < 0.6  # 64 batches: 19 expected


def test_mix_probabilities_outside_0_1_are_usage_errors():
    with pytest.raises(UsageError, match="data.mix_prob=1.5"):
        dataclasses.replace(Config(), data=DataConfig(mix_prob=1.5)).validate()

"""Mixup / CutMix through the train step and the loop: the step trains on the mixed images with
soft labels `lam * y + (1 - lam) * y_reversed` that sum to 1, and a run with mixing on logs a
finite loss that differs from the unmixed run's.

Recording wrappers around the mix and the loss (`jax.debug.callback`, so the step stays jitted)
let the test see the very arrays the step used.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from flaxnets.data import normalize
from flaxnets.data.mix import mixup_or_cutmix
from flaxnets.train.state import create_train_state, merge_model
from flaxnets.train.step import make_train_step
from loop_helpers import read_lines, train
from step_helpers import MEAN, STD, TinyNet, batch, loss_fn

NUM_CLASSES = 10


def setup():
    model = TinyNet(rngs=nnx.Rngs(0))
    tx = optax.sgd(0.1)
    graphdef, state = create_train_state(model, tx, seed=0)
    return graphdef, tx, state, batch(8)


def step_loss(mix_fn, loss):
    """The train_loss of one jitted step from the initial state of `setup()`."""
    graphdef, tx, state, b = setup()
    step = make_train_step(graphdef, tx, loss_fn=loss, mean=MEAN, std=STD, mix_fn=mix_fn, num_classes=NUM_CLASSES)
    return float(step(state, b)[1]["train_loss"])


@pytest.fixture(scope="module")
def unmixed_loss():
    return step_loss(None, loss_fn)


def mixed_step(mixup_alpha, cutmix_alpha):
    """One jitted train step with mixing, recorded; returns what the tests compare."""
    seen = {}

    def record(name):
        return lambda *arrays: seen.__setitem__(name, tuple(np.asarray(a) for a in arrays))

    def recording_mix(images, labels, key):
        out = mixup_or_cutmix(images, labels, key, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha)
        jax.debug.callback(record("mix"), images, labels, *out)
        return out

    def recording_loss(logits, labels):
        jax.debug.callback(record("loss_labels"), labels)
        return loss_fn(logits, labels)

    mixed = step_loss(recording_mix, recording_loss)
    jax.effects_barrier()
    images_in, onehot, images, labels = seen["mix"]
    # The same model in train mode on the recorded mixed batch.
    graphdef, _, state, b = setup()
    model = merge_model(graphdef, state.params, state.batch_stats, state.other, train=True)
    return {
        "mix_in": (images_in, onehot),
        "mix_out": (images, labels),
        "loss_labels": seen["loss_labels"][0],
        "batch": b,
        "mixed": mixed,
        "manual": float(loss_fn(model(jnp.asarray(images)), labels)),
    }


def check_soft_labels(result):
    """Labels fed to the loss are the mix's, sum to 1 and are lam * y + (1 - lam) * y[::-1];
    returns the per-example lam."""
    y = result["batch"]["label"]
    images_in, onehot = result["mix_in"]
    np.testing.assert_array_equal(onehot, np.eye(NUM_CLASSES, dtype=np.float32)[y])
    np.testing.assert_allclose(images_in, normalize(result["batch"]["image"], MEAN, STD), rtol=1e-6)
    labels = result["loss_labels"]
    np.testing.assert_array_equal(labels, result["mix_out"][1])
    assert labels.shape == (len(y), NUM_CLASSES)
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-6)
    assert np.all(y != y[::-1])  # every example's partner has another class
    lam = labels[np.arange(len(y)), y]
    np.testing.assert_allclose(labels, lam[:, None] * onehot + (1 - lam[:, None]) * onehot[::-1], atol=1e-6)
    assert np.any((lam > 0.01) & (lam < 0.99))  # really mixed
    return lam


def check_loss(result, unmixed_loss):
    """The step's loss is the loss on the mixed batch, not the unmixed one."""
    assert result["mixed"] == pytest.approx(result["manual"], rel=1e-5)
    assert abs(result["mixed"] - unmixed_loss) > 1e-3


# jax.random.beta takes seconds to compile on CPU, so every step with mixing is slow to build.
@pytest.mark.slow
def test_mixup_in_the_train_step_mixes_images_and_labels_with_one_lambda(unmixed_loss):
    result = mixed_step(mixup_alpha=0.8, cutmix_alpha=0.0)
    lam = check_soft_labels(result)
    x, _ = result["mix_in"]
    w = lam[:, None, None, None]
    np.testing.assert_allclose(result["mix_out"][0], w * x + (1 - w) * x[::-1], rtol=1e-5, atol=1e-5)
    assert len(set(np.round(lam, 6))) > 1  # one lambda per example
    check_loss(result, unmixed_loss)


@pytest.mark.slow
def test_cutmix_in_the_train_step_pastes_the_partner_and_mixes_labels(unmixed_loss):
    result = mixed_step(mixup_alpha=0.0, cutmix_alpha=1.0)
    check_soft_labels(result)
    x, _ = result["mix_in"]
    mixed = result["mix_out"][0]
    from_self = np.all(mixed == x, axis=-1)
    from_partner = np.all(mixed == x[::-1], axis=-1)
    assert np.all(from_self | from_partner)  # every pixel is one image's or its partner's
    assert np.any(from_partner & ~from_self)  # some box was pasted
    check_loss(result, unmixed_loss)


# ----------------------------------------------------------------------------------- Loop ----


@pytest.mark.slow
def test_loop_with_mixup_and_cutmix_mixes_every_step_and_logs_a_finite_loss(digits, tmp_path, monkeypatch):
    # The loop builds its mix from flaxnets.data.mix at run time; a recording wrapper shows it
    # runs once per step with the recipe's alphas and turns the labels into soft ones.
    import flaxnets.data.mix

    calls, calls_kwargs = [], []

    def record(onehot, soft):
        calls.append((np.asarray(onehot), np.asarray(soft)))

    def recording(images, labels, key, **kwargs):
        images_out, labels_out = mixup_or_cutmix(images, labels, key, **kwargs)
        jax.debug.callback(record, labels, labels_out)
        calls_kwargs.append(kwargs)
        return images_out, labels_out

    monkeypatch.setattr(flaxnets.data.mix, "mixup_or_cutmix", recording)
    # 0.05 epoch of 44 steps = 2 steps of 32 examples.
    result = train(digits, tmp_path / "run", "train.epochs=0.05", "data.mixup_alpha=0.8", "data.cutmix_alpha=1.0")
    jax.effects_barrier()
    assert result["step"] == 2
    assert calls_kwargs and all(k == {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "prob": 1.0, "switch_prob": 0.5}
                                for k in calls_kwargs)
    assert len(calls) == 2
    for onehot, soft in calls:
        assert onehot.shape == soft.shape == (32, NUM_CLASSES)
        np.testing.assert_array_equal(onehot.sum(axis=1), 1.0)
        np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-6)
    assert any(np.any((soft > 0.01) & (soft < 0.99)) for _, soft in calls)  # soft labels reached the step
    lines = [r for r in read_lines(tmp_path / "run") if "train_loss" in r]
    assert [r["step"] for r in lines] == [1, 2]
    assert all(np.isfinite(r["train_loss"]) for r in lines)
    assert result["eval_count"] == 360 and np.isfinite(result["eval_top1"])

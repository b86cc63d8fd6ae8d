"""Loss: label smoothing reaches the loss, float32 whatever the logits' dtype, soft labels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxnets.train.losses import cross_entropy_loss


def _logits(shape=(4, 10), seed=0):
    return jax.random.normal(jax.random.key(seed), shape) * 3


def test_label_smoothing_changes_loss_by_analytic_amount():
    logits = _logits()
    labels = jnp.array([0, 3, 9, 5])
    s = 0.1
    log_p = np.asarray(jax.nn.log_softmax(logits.astype(jnp.float32)), np.float64)
    nll = -log_p[np.arange(4), np.asarray(labels)]
    expected_delta = s * (-log_p.mean(axis=-1) - nll)  # (1-s)*nll + s*mean(-log p) - nll
    plain = cross_entropy_loss(logits, labels)
    smooth = cross_entropy_loss(logits, labels, label_smoothing=s)
    np.testing.assert_allclose(np.asarray(plain), nll, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(smooth - plain), expected_delta, rtol=1e-4, atol=1e-6)
    assert np.all(np.abs(expected_delta) > 1e-3)


def test_bfloat16_logits_give_float32_loss():
    logits = _logits().astype(jnp.bfloat16)
    labels = jnp.array([1, 2, 3, 4])
    loss = cross_entropy_loss(logits, labels, label_smoothing=0.1)
    assert loss.dtype == jnp.float32
    reference = cross_entropy_loss(logits.astype(jnp.float32), labels, label_smoothing=0.1)
    np.testing.assert_array_equal(np.asarray(loss), np.asarray(reference))


def test_soft_labels_mixup_and_smoothing():
    logits = _logits()
    a, b = jnp.array([0, 1, 2, 3]), jnp.array([4, 5, 6, 7])
    lam = 0.3
    soft = lam * jax.nn.one_hot(a, 10) + (1 - lam) * jax.nn.one_hot(b, 10)
    mixed = cross_entropy_loss(logits, soft, label_smoothing=0.1)
    expected = lam * cross_entropy_loss(logits, a, 0.1) + (1 - lam) * cross_entropy_loss(logits, b, 0.1)
    np.testing.assert_allclose(np.asarray(mixed), np.asarray(expected), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(cross_entropy_loss(logits, jax.nn.one_hot(a, 10))),
                               np.asarray(cross_entropy_loss(logits, a)), rtol=1e-6)


def test_soft_label_shape_mismatch_raises():
    with pytest.raises(ValueError, match="do not match"):
        cross_entropy_loss(_logits(), jnp.ones((4, 5)) / 5)

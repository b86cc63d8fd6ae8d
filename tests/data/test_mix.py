"""Mixup / CutMix (TF-Vision MixupAndCutmix semantics) on tiny batches.

Compiling jax.random.beta takes seconds on CPU, so the tests share compiled functions.
"""

import functools
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxnets.data.mix import cutmix, mixup, mixup_or_cutmix

B, H, W, K = 8, 16, 16, 5


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((B, H, W, 3)).astype(np.float32)
    labels = np.eye(K, dtype=np.float32)[rng.integers(0, K, B)]
    return jnp.asarray(images), jnp.asarray(labels)


def test_mixup_blends_with_reversed_batch_and_labels_match():
    images, labels = _batch()
    out, soft = jax.jit(mixup, static_argnums=3)(images, labels, jax.random.key(0), 0.8)
    assert out.dtype == jnp.float32 and soft.shape == (B, K)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-6)
    images, labels, out, soft = map(np.asarray, (images, labels, out, soft))
    lams = []
    for i in range(B):
        j = B - 1 - i
        # Recover lambda from the image and check the label carries the same weight.
        diff = images[i] - images[j]
        lam = np.sum((out[i] - images[j]) * diff) / np.sum(diff * diff)
        np.testing.assert_allclose(out[i], lam * images[i] + (1 - lam) * images[j], atol=1e-5)
        np.testing.assert_allclose(soft[i], lam * labels[i] + (1 - lam) * labels[j], atol=1e-5)
        lams.append(lam)
    assert all(0 <= lam <= 1 for lam in lams)
    assert len(np.unique(np.round(lams[: B // 2], 5))) == B // 2  # one lambda per example


def test_cutmix_pastes_square_box_and_label_weight_from_unclipped_area():
    images, labels = _batch(1)
    out, soft = jax.jit(cutmix, static_argnums=3)(images, labels, jax.random.key(2), 1.0)
    images, labels, out, soft = map(np.asarray, (images, labels, out, soft))
    for i in range(B):
        j = B - 1 - i
        pasted = np.all(out[i] == images[j], axis=-1) & np.any(images[i] != images[j], axis=-1)
        kept = np.all(out[i] == images[i], axis=-1)
        assert np.all(pasted | kept)
        lam = soft[i] @ labels[i] if labels[i].argmax() != labels[j].argmax() else None
        if lam is not None:
            cut_sq = (1 - lam) * H * W
            cut = round(np.sqrt(cut_sq))
            assert abs(cut * cut - cut_sq) < 1e-3  # 1 - cut^2 / (H W), cut an integer
            if pasted.any():
                ys, xs = np.nonzero(pasted)
                assert ys.max() - ys.min() < 2 * (cut // 2) + 1
                assert xs.max() - xs.min() < 2 * (cut // 2) + 1
                assert pasted.sum() <= (2 * (cut // 2)) ** 2


@functools.lru_cache(maxsize=None)
def _mixed_over_keys(mixup_alpha, cutmix_alpha):
    """jit(vmap) over 300 keys; prob and switch_prob stay traced so one compile serves many."""
    images, labels = _batch(2)

    def one(key, prob, switch_prob):
        return mixup_or_cutmix(
            images, labels, key, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha,
            prob=prob, switch_prob=switch_prob,
        )

    fn = jax.jit(jax.vmap(one, in_axes=(0, None, None)))
    keys = jax.random.split(jax.random.key(3), 300)
    return images, labels, lambda prob, switch_prob: fn(keys, prob, switch_prob)


def _fraction_cutmix(outs, images):
    # CutMix copies pixels exactly (most stay), Mixup changes almost every pixel.
    unchanged = np.mean(np.asarray(outs == images[None]), axis=(1, 2, 3, 4))
    return np.mean(unchanged > 0.3), np.mean(unchanged == 1.0)


@pytest.mark.slow
def test_mixup_or_cutmix_switch_and_prob():
    images, labels, run = _mixed_over_keys(0.8, 1.0)
    for switch_prob in (0.5, 0.2):
        outs, soft = run(1.0, switch_prob)
        cut, same = _fraction_cutmix(outs, images)
        assert abs(cut - switch_prob) < 0.09 and same < 0.05
        np.testing.assert_allclose(np.asarray(soft).sum(-1), 1.0, rtol=1e-5)
    outs, soft = run(0.4, 0.5)
    _, same = _fraction_cutmix(outs, images)
    assert abs(same - 0.6) < 0.09  # batches left alone with probability 1 - prob
    outs, soft = run(0.0, 0.5)
    assert np.array_equal(np.asarray(outs), np.broadcast_to(np.asarray(images), outs.shape))
    assert np.array_equal(np.asarray(soft), np.broadcast_to(np.asarray(labels), soft.shape))


@pytest.mark.slow
def test_mixup_or_cutmix_zero_alpha_disables_that_method():
    for mixup_alpha, cutmix_alpha, expected in ((0.8, 0.0, 0.0), (0.0, 1.0, 1.0)):
        images, _, run = _mixed_over_keys(mixup_alpha, cutmix_alpha)
        cut, _ = _fraction_cutmix(run(1.0, 0.5)[0], images)
        assert abs(cut - expected) < 0.05
    images, labels = _batch(3)
    with pytest.raises(ValueError, match="both 0"):
        mixup_or_cutmix(images, labels, jax.random.key(4), mixup_alpha=0.0, cutmix_alpha=0.0)

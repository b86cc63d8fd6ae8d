"""The train and eval steps themselves: normalisation, EMA under accumulation, gradient
accumulation, compute precision and NaN reporting.

Most tests use a tiny conv net (one conv, optional BatchNorm, a linear head) so every XLA compile
takes a second: what is tested is the step's plumbing, which does not depend on the network.
The precision test traces the zoo model abstractly (`jax.eval_shape`), which compiles nothing.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from flaxnets.data import normalize
from flaxnets.models import create_model
from flaxnets.train.state import create_train_state, merge_model
from flaxnets.train.step import ema_decay_at, make_eval_step, make_train_step
from step_helpers import MEAN, STD, TinyNet, batch, loss_fn, tree_max_diff

def test_step_normalises_uint8_images_with_the_given_mean_and_std():
    # Pitfall 5: the network must see (x - mean) / std, not raw 0..255 pixels.
    model = TinyNet(rngs=nnx.Rngs(0))
    tx = optax.sgd(0.0)
    graphdef, state = create_train_state(model, tx, seed=0)
    b = batch()
    expected_model = merge_model(graphdef, state.params, state.batch_stats, state.other, train=True)
    manual = (b["image"].astype(np.float32) - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
    expected = float(loss_fn(expected_model(jnp.asarray(manual)), b["label"]))
    raw_model = merge_model(graphdef, state.params, state.batch_stats, state.other, train=True)
    unnormalised = float(loss_fn(raw_model(jnp.asarray(b["image"], jnp.float32)), b["label"]))

    step = make_train_step(graphdef, tx, loss_fn=loss_fn, mean=MEAN, std=STD)
    _, metrics = step(state, b)
    assert float(metrics["train_loss"]) == pytest.approx(expected, rel=1e-5)
    assert abs(unnormalised - expected) > 1e-3  # the comparison can tell the two apart
    np.testing.assert_allclose(normalize(b["image"], MEAN, STD), manual, rtol=1e-6)


def test_ema_is_updated_once_per_optimizer_step_under_grad_accumulation():
    # Pitfall 6: with grad_accum_steps=4 the EMA advances once, with step 1's decay.
    model = TinyNet(rngs=nnx.Rngs(0))
    tx = optax.sgd(0.1)
    graphdef, state = create_train_state(model, tx, seed=0, ema=True)
    ema0 = jax.tree.map(np.asarray, state.ema_params)
    step = make_train_step(graphdef, tx, loss_fn=loss_fn, mean=MEAN, std=STD, grad_accum_steps=4,
                           ema_decay=0.999, ema_dynamic_decay=True)
    new, _ = step(state, batch(16))
    assert int(new.step) == 1
    d = float(ema_decay_at(0.999, 1, True))
    assert d == pytest.approx(2 / 11)
    once = jax.tree.map(lambda e, p: d * e + (1 - d) * np.asarray(p), ema0, new.params)
    assert tree_max_diff(new.ema_params, once) < 1e-6
    four_times = once
    for s in (2, 3, 4):
        ds = float(ema_decay_at(0.999, s, True))
        four_times = jax.tree.map(lambda e, p: ds * e + (1 - ds) * np.asarray(p), four_times, new.params)
    assert tree_max_diff(once, four_times) > 1e-4  # four updates would be visible


def test_gradient_accumulation_matches_one_large_step_without_batchnorm():
    # The loss is a mean over examples, so the mean of k equal-sized micro-batch gradients is the
    # full-batch gradient. Without BatchNorm (whose moments are per micro-batch) and without
    # dropout, one step with k=2 must equal one step over the whole batch up to float rounding.
    b = batch(16)
    results = []
    for k in (1, 2):
        model = TinyNet(rngs=nnx.Rngs(0), batch_norm=False)
        tx = optax.sgd(0.5)
        graphdef, state = create_train_state(model, tx, seed=0)
        step = make_train_step(graphdef, tx, loss_fn=loss_fn, mean=MEAN, std=STD, grad_accum_steps=k)
        new, metrics = step(state, b)
        results.append((jax.tree.map(np.asarray, new.params), metrics))
    (p1, m1), (p2, m2) = results
    assert tree_max_diff(p1, p2) < 1e-5
    assert float(m1["train_loss"]) == pytest.approx(float(m2["train_loss"]), rel=1e-5)
    assert float(m1["grad_norm"]) == pytest.approx(float(m2["grad_norm"]), rel=1e-4)
    assert float(m1["grad_norm"]) > 0


@pytest.mark.slow
def test_bfloat16_compute_gives_float32_logits_and_loss():
    # Pitfall 7, on the zoo model: traced abstractly, so nothing is compiled.
    model = create_model("mobilenet_v3_small", num_classes=10, rngs=nnx.Rngs(0), dtype=jnp.bfloat16)
    tx = optax.sgd(0.1)
    graphdef, state = create_train_state(model, tx, seed=0)
    b = batch(8, size=32)
    logits = jax.eval_shape(
        lambda p: merge_model(graphdef, p, state.batch_stats, state.other, train=False)(
            normalize(b["image"], MEAN, STD)), state.params)
    assert logits.dtype == jnp.float32 and logits.shape == (8, 10)
    step = make_train_step(graphdef, tx, loss_fn=loss_fn, mean=MEAN, std=STD)
    new, metrics = jax.eval_shape(step, state, b)
    assert metrics["train_loss"].dtype == jnp.float32
    # Parameters and BatchNorm statistics stay float32 under bfloat16 compute.
    assert {x.dtype for x in jax.tree.leaves((new.params, new.batch_stats))} == {jnp.dtype(jnp.float32)}
    eval_step = make_eval_step(graphdef, mean=MEAN, std=STD)
    counts = jax.eval_shape(eval_step, state.params, state.batch_stats, state.other,
                            dict(b, mask=np.ones(8, bool)))
    assert counts["count"].dtype == jnp.int32


def test_low_precision_logits_are_refused():
    class HalfLogits(TinyNet):
        def __call__(self, x, rngs=None):
            return super().__call__(x).astype(jnp.bfloat16)

    model = HalfLogits(rngs=nnx.Rngs(0))
    tx = optax.sgd(0.1)
    graphdef, state = create_train_state(model, tx, seed=0)
    step = make_train_step(graphdef, tx, loss_fn=loss_fn, mean=MEAN, std=STD)
    with pytest.raises(TypeError, match="bfloat16 logits"):
        jax.eval_shape(step, state, batch())


def test_injected_nan_is_reported_as_not_finite():
    model = TinyNet(rngs=nnx.Rngs(0))
    tx = optax.sgd(0.1)
    graphdef, state = create_train_state(model, tx, seed=0)
    step = make_train_step(graphdef, tx, loss_fn=loss_fn, mean=MEAN, std=STD)
    good, metrics = step(state, batch())
    assert bool(metrics["finite"])
    kernel = good.params["head"]["kernel"]
    kernel.value = kernel.value.at[0, 0].set(jnp.nan)
    _, metrics = step(good, batch(seed=1))
    assert not bool(metrics["finite"])
    assert not np.isfinite(float(metrics["train_loss"]))


def test_huge_learning_rate_is_reported_as_not_finite():
    model = TinyNet(rngs=nnx.Rngs(0), batch_norm=False)
    tx = optax.sgd(1e38)
    graphdef, state = create_train_state(model, tx, seed=0)
    step = make_train_step(graphdef, tx, loss_fn=loss_fn, mean=MEAN, std=STD)
    finite = []
    for seed in range(3):
        state, metrics = step(state, batch(seed=seed))
        finite.append(bool(metrics["finite"]))
    assert not all(finite)
    assert finite[-1] is False  # once non-finite, it stays so


def test_eval_step_counts_only_masked_in_examples():
    model = TinyNet(rngs=nnx.Rngs(0))
    graphdef, state = create_train_state(model, optax.sgd(0.1), seed=0)
    eval_step = make_eval_step(graphdef, mean=MEAN, std=STD)
    b = batch(8)
    mask = np.array([1, 1, 1, 0, 1, 0, 0, 1], bool)
    counts = eval_step(state.params, state.batch_stats, state.other, dict(b, mask=mask))
    assert int(counts["count"]) == 5
    assert 0 <= int(counts["top1"]) <= int(counts["top5"]) <= 5
    # With 10 classes and top-5, forcing all labels to each logit's arg-max makes every
    # masked-in example a top-1 hit.
    logits = merge_model(graphdef, state.params, state.batch_stats, state.other, train=False)(
        normalize(b["image"], MEAN, STD))
    hit = dict(b, label=np.asarray(jnp.argmax(logits, -1), np.int32), mask=mask)
    assert int(eval_step(state.params, state.batch_stats, state.other, hit)["top1"]) == 5


def test_ema_start_step_copies_weights_until_then_and_counts_the_dynamic_decay_from_it():
    # TF-Vision ExponentialMovingAverage(start_step=1560, dynamic_decay=False): MobileNetV4 Conv-S.
    assert float(ema_decay_at(0.9999, 1559, False, start_step=1560)) == 0.0
    assert float(ema_decay_at(0.9999, 1560, False, start_step=1560)) == pytest.approx(0.9999)
    assert float(ema_decay_at(0.999, 1561, True, start_step=1560)) == pytest.approx(2 / 11)
    assert float(ema_decay_at(0.999, 1, True)) == pytest.approx(2 / 11)

"""Optimizers: TF1 RMSProp step by step against NumPy, exact L2 strength, masks by kind."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from flaxnets.config import Config, OptimizerConfig, ScheduleConfig, TrainConfig
from flaxnets.errors import FlaxnetsError, UsageError
from flaxnets.train.optim import build_optimizer, kind_mask, rmsprop_tf, scale_by_adam_keras

KINDS = {
    ("stem", "kernel"): "conv_kernel",
    ("stem_bn", "scale"): "bn_scale",
    ("stem_bn", "bias"): "bn_bias",
    ("block", 0, "depthwise", "kernel"): "depthwise_kernel",
    ("head", "kernel"): "dense_kernel",
    ("head", "bias"): "bias",
}


def _params(seed=0):
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return jnp.asarray(rng.normal(size=shape), jnp.float32)

    return {
        "stem": {"kernel": normal(3, 3, 3, 4)},
        "stem_bn": {"scale": 1.0 + normal(4), "bias": normal(4)},
        "block": {0: {"depthwise": {"kernel": normal(3, 3, 1, 4)}}},
        "head": {"kernel": normal(4, 5), "bias": normal(5)},
    }


def _config(**optimizer):
    return Config(
        optimizer=OptimizerConfig(**optimizer),
        schedule=ScheduleConfig(name="constant", base_lr=1.0),
        train=TrainConfig(global_batch_size=10, epochs=1),
    )


def test_rmsprop_tf_matches_numpy_reference_with_changing_lr():
    decay, momentum, eps = 0.9, 0.9, 1e-3
    schedule = lambda count: 0.1 * (count + 1.0) ** 0.5  # noqa: E731 - a changing LR
    tx = rmsprop_tf(schedule, decay, momentum, eps, initial_accumulator=1.0)
    params = _params()
    state = tx.init(params)

    @jax.jit
    def step_fn(grads, state, params):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    rng = np.random.default_rng(0)
    w = {k: np.asarray(v, np.float64) for k, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    ms = {k: np.ones_like(v) for k, v in w.items()}
    mom = {k: np.zeros_like(v) for k, v in w.items()}
    for step in range(6):
        grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape) * 3, jnp.float32), params)
        params, state = step_fn(grads, state, params)
        lr = 0.1 * (step + 1.0) ** 0.5
        for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
            g = np.asarray(g, np.float64)
            ms[path] = decay * ms[path] + (1 - decay) * g**2
            mom[path] = momentum * mom[path] + lr * g / np.sqrt(ms[path] + eps)
            w[path] = w[path] - mom[path]
    for path, p in jax.tree_util.tree_flatten_with_path(params)[0]:
        np.testing.assert_allclose(np.asarray(p), w[path], rtol=2e-5, atol=2e-6)


def test_l2_is_added_at_full_strength_and_masked_by_kind():
    """Pitfall 2: the gradient gains exactly l2 * w (the gradient of 0.5 * l2 * ||w||^2)."""
    l2 = 1e-2
    tx = build_optimizer(_config(name="sgd", momentum=0.0, l2=l2, l2_exclude=("bn_scale", "bn_bias")), KINDS, 10)
    params = _params()
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = jax.jit(tx.update)(zeros, tx.init(params), params)
    loss_grad = jax.grad(lambda p: 0.5 * l2 * sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(p)))(params)
    for path, kind in KINDS.items():
        got = _at(updates, path)
        if kind in ("bn_scale", "bn_bias"):
            np.testing.assert_array_equal(np.asarray(got), 0.0)
        else:
            np.testing.assert_allclose(np.asarray(got), -l2 * np.asarray(_at(params, path)), rtol=1e-6)
            np.testing.assert_allclose(np.asarray(got), -np.asarray(_at(loss_grad, path)), rtol=1e-6)


def _at(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def test_adamw_decay_times_lr_excludes_selected_kinds_and_matches_optax():
    config = _config(name="adamw", weight_decay=0.1, weight_decay_exclude=("bn_scale", "bn_bias", "depthwise_kernel"))
    config = Config(optimizer=config.optimizer, train=config.train,
                    schedule=ScheduleConfig(name="constant", base_lr=0.004))
    tx = build_optimizer(config, KINDS, 10)
    params = _params()
    state = tx.init(params)
    zeros = jax.tree.map(jnp.zeros_like, params)
    update = jax.jit(tx.update)
    updates, _ = update(zeros, state, params)
    for path, kind in KINDS.items():
        expected = 0.0 if kind in ("bn_scale", "bn_bias", "depthwise_kernel") else -0.004 * 0.1 * np.asarray(_at(params, path))
        np.testing.assert_allclose(np.asarray(_at(updates, path)), expected, rtol=1e-6, atol=0)
    # With gradients, identical to optax.adamw with the same mask.
    grads = jax.tree.map(lambda p: jnp.cos(p) + 0.5, params)
    mask = kind_mask(KINDS, config.optimizer.weight_decay_exclude)
    ref = optax.adamw(0.004, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.1, mask=mask)
    ours, _ = update(grads, state, params)
    theirs, _ = jax.jit(ref.update)(grads, ref.init(params), params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6), ours, theirs)


def test_keras_adam_epsilon_hat_matches_formula():
    b1, b2, eps = 0.9, 0.999, 1e-3
    tx = scale_by_adam_keras(b1, b2, eps)
    p = {"w": jnp.zeros(3)}
    state = tx.init(p)
    m = v = np.zeros(3)
    for t, g in enumerate([np.array([1.0, -2.0, 0.01]), np.array([0.5, 0.5, -0.02])], start=1):
        upd, state = tx.update({"w": jnp.asarray(g, jnp.float32)}, state)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        expected = np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
        # float32 b2 (0.999 is not exact) limits the agreement of 1 - b2**t to ~1e-5.
        np.testing.assert_allclose(np.asarray(upd["w"]), expected, rtol=5e-5)


def test_sgd_nesterov_matches_reference():
    tx = build_optimizer(_config(name="sgd", momentum=0.9, nesterov=True), KINDS, 10)
    params = {"head": {"kernel": jnp.ones((2, 2))}}
    kinds = {("head", "kernel"): "dense_kernel"}
    tx = build_optimizer(_config(name="sgd", momentum=0.9, nesterov=True), kinds, 10)
    state = tx.init(params)
    buf = np.zeros((2, 2))
    for g in (1.0, 2.0, -1.0):
        updates, state = tx.update({"head": {"kernel": jnp.full((2, 2), g)}}, state, params)
        buf = 0.9 * buf + g
        np.testing.assert_allclose(np.asarray(updates["head"]["kernel"]), -(g + 0.9 * buf), rtol=1e-6)


def test_global_norm_clipping():
    kinds = {("head", "kernel"): "dense_kernel"}
    tx = build_optimizer(_config(name="sgd", momentum=0.0, grad_clip_norm=1.0), kinds, 10)
    params = {"head": {"kernel": jnp.zeros(4)}}
    updates, _ = tx.update({"head": {"kernel": jnp.full(4, 3.0)}}, tx.init(params), params)
    assert float(jnp.linalg.norm(updates["head"]["kernel"])) == pytest.approx(1.0, rel=1e-6)


def test_mask_errors_name_the_problem():
    with pytest.raises(UsageError, match="batchnorm"):
        kind_mask(KINDS, ["batchnorm"])
    with pytest.raises(FlaxnetsError, match="has no kind in param_kinds"):
        kind_mask({}, ["bias"])(_params())
    with pytest.raises(UsageError, match="optimizer.l2"):
        build_optimizer(_config(name="rmsprop_tf", weight_decay=0.1), KINDS, 10)


@pytest.mark.slow
def test_works_with_nnx_optimizer_and_state_paths():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(3, 4, (3, 3), use_bias=False, rngs=rngs)
            self.bn = nnx.BatchNorm(4, rngs=rngs)
            self.head = nnx.Linear(4, 2, rngs=rngs)

        def __call__(self, x):
            return self.head(jnp.mean(self.bn(self.conv(x)), axis=(1, 2)))

    model = Net(nnx.Rngs(0))
    kinds = {("conv", "kernel"): "conv_kernel", ("bn", "scale"): "bn_scale", ("bn", "bias"): "bn_bias",
             ("head", "kernel"): "dense_kernel", ("head", "bias"): "bias"}
    assert set(kinds) == {path for path, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    config = _config(name="adamw", weight_decay=0.5)
    optimizer = nnx.Optimizer(model, build_optimizer(config, kinds, 10), wrt=nnx.Param)
    before = nnx.state(model, nnx.Param)
    before = jax.tree.map(np.asarray, before)
    zero_grads = jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param))
    nnx.jit(lambda opt, m, g: opt.update(m, g))(optimizer, model, zero_grads)
    after = nnx.state(model, nnx.Param)
    np.testing.assert_allclose(np.asarray(after["head"]["kernel"][...]), 0.5 * before["head"]["kernel"][...], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(after["bn"]["scale"][...]), before["bn"]["scale"][...])

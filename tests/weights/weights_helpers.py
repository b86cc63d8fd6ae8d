"""Helpers for the weights, export and predict tests: zoo models with randomised weights."""

import numpy as np


def randomize(model, seed: int):
    """Give every parameter and BatchNorm statistic random values (variances positive), so a
    round trip that drops or swaps any tensor changes the logits."""
    import jax.numpy as jnp
    from flax import nnx

    rng = np.random.default_rng(seed)
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))):
        shape = var.value.shape
        if path[-1] == "var":
            value = rng.uniform(0.5, 1.5, shape)
        elif path[-1] == "scale":
            value = rng.uniform(0.5, 1.5, shape)
        else:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
            value = rng.standard_normal(shape) / np.sqrt(max(fan_in, 1))
        var.value = jnp.asarray(value, jnp.float32)
    model.eval()
    return model


def build(name: str, seed: int, **overrides):
    """Zoo model `name` with random weights, built abstractly (no initialiser compiles)."""
    from flax import nnx

    from flaxnets.models import create_model

    return randomize(nnx.eval_shape(lambda: create_model(name, **overrides)), seed)


def mnv3_small():
    """mobilenet_v3_small, symmetric padding (a timm-native model), random weights."""
    return build("mobilenet_v3_small", 0, padding="symmetric", bn_epsilon=1e-5)


def lite0_same():
    """efficientnet_lite0 with TF SAME padding, random weights."""
    return build("efficientnet_lite0", 1, padding="same")


_FORWARDS = {}


def logits(model, resolution=64, batch=2, seed=0):
    """Eval-mode logits of a fixed random batch."""
    x = np.random.default_rng(seed).standard_normal((batch, resolution, resolution, 3)).astype(np.float32)
    return forward(model, x)


def forward(model, x):
    """Eval-mode logits of `x` (one compiled forward per architecture)."""
    import jax
    from flax import nnx

    model.eval()
    graphdef, state = nnx.split(model)
    if graphdef not in _FORWARDS:
        _FORWARDS[graphdef] = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
    return np.asarray(_FORWARDS[graphdef](state, x))

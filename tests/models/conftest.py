"""Model-test helpers. Building a model eagerly compiles every initialiser shape (slow on a
shared CPU); `random_model` builds it abstractly and fills it with NumPy random values instead,
which is all a forward/shape/parity test needs."""

import jax
import numpy as np
import pytest
from flax import nnx

from flaxnets.models import create_model


def random_model(name, seed=0, **overrides):
    """`create_model(name, **overrides)` with random float32 weights and BN statistics."""
    abstract = nnx.eval_shape(lambda: create_model(name, **overrides))
    graphdef, state = nnx.split(abstract)
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        shape = leaf.shape
        # Variables flatten to (..., DictKey(name), GetAttrKey('value')).
        last = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)][-1]
        if last == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            return rng.normal(0, 1 / np.sqrt(fan_in), shape).astype(np.float32)
        if last in ("scale", "var"):
            return rng.uniform(0.5, 1.5, shape).astype(np.float32)
        if last in ("bias", "mean"):
            return rng.normal(0, 0.1, shape).astype(np.float32)
        raise AssertionError(f"random_model: unexpected leaf {path}")

    state = jax.tree_util.tree_map_with_path(fill, state)
    return nnx.merge(graphdef, state)


@pytest.fixture(scope="session")
def small_model():
    """mobilenet_v3_small, 10 classes, random weights (shared; tests must not mutate it)."""
    return random_model("mobilenet_v3_small", num_classes=10)


@pytest.fixture(scope="session")
def make_model():
    """The `random_model` builder, for tests that need their own model."""
    return random_model

"""First checks: the registry builds, runs and counts."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from flaxnets.models import count_params, get_spec, list_models, param_kinds


@pytest.mark.slow
def test_forward_eval_and_train_shapes_and_dtype(make_model):
    model = make_model("mobilenet_v3_small", num_classes=10)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32, 3)), jnp.float32)
    model.eval()
    y_eval = nnx.jit(lambda m, x: m(x))(model, x)
    assert y_eval.shape == (2, 10) and y_eval.dtype == jnp.float32
    assert np.isfinite(np.asarray(y_eval)).all()
    model.train()
    y_train = nnx.jit(lambda m, x, r: m(x, rngs=r))(model, x, nnx.Rngs(dropout=1))
    assert y_train.shape == (2, 10) and np.isfinite(np.asarray(y_train)).all()


def test_core_models_registered_with_reference_param_counts():
    assert {"mobilenet_v3_large", "mobilenet_v3_small", "efficientnet_b0"} <= set(list_models())
    assert count_params("mobilenet_v3_large") == 5_483_032
    assert count_params("mobilenet_v3_small") == 2_542_856
    assert count_params("efficientnet_b0") == 5_288_548
    assert get_spec("efficientnet_b0").resolution == 224


def test_param_kinds_cover_every_param(small_model):
    kinds = param_kinds(small_model)
    flat = nnx.to_flat_state(nnx.state(small_model, nnx.Param))
    assert set(kinds) == {tuple(p) for p, _ in flat}
    assert count_params(small_model) == count_params("mobilenet_v3_small", num_classes=10)

"""Unrolled convolutions (flaxnets' default on the CPU): a depthwise convolution as a sum of
shifted slices and a 1x1 convolution as a matrix product equal `lax.conv_general_dilated`
(values and gradients; TF SAME and symmetric padding, strides 1 and 2, odd sizes, bfloat16);
the choice follows FLAXNETS_CONV_IMPL / `conv_implementation`; a whole model gives the same
logits either way."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import flaxnets
from flaxnets.errors import FlaxnetsError
from flaxnets.models import layers
from flaxnets.models.layers import conv_implementation, depthwise_shifts, pointwise_matmul


def _lax(x, kernel, strides, padding, groups):
    return jax.lax.conv_general_dilated(
        x, kernel, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups, precision=jax.lax.Precision.HIGHEST)


def _assert_same_values_and_gradients(ours, x, kernel, strides, padding, groups, seed):
    want = _lax(x, kernel, strides, padding, groups)
    got = ours(x, kernel)
    assert got.shape == want.shape and got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    cotangent = jax.random.normal(jax.random.PRNGKey(seed), want.shape)
    grads = [jax.grad(lambda x, k, f=f: jnp.sum(f(x, k) * cotangent), argnums=(0, 1))(x, kernel)
             for f in (lambda x, k: _lax(x, k, strides, padding, groups), ours)]
    for want_grad, got_grad in zip(*grads, strict=True):
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel_size,stride,padding,size", [
    (3, 1, "SAME", (13, 10)), (5, 2, "SAME", (16, 11)), (3, 2, ((1, 1), (1, 1)), (15, 14)),
])
def test_depthwise_shifts_equal_the_grouped_convolution(kernel_size, stride, padding, size):
    kx, kk = jax.random.split(jax.random.PRNGKey(kernel_size * 10 + stride))
    x = jax.random.normal(kx, (2, *size, 7))
    kernel = jax.random.normal(kk, (kernel_size, kernel_size, 1, 7))
    _assert_same_values_and_gradients(
        lambda x, k: depthwise_shifts(x, k, (stride, stride), padding),
        x, kernel, (stride, stride), padding, 7, seed=1)


def test_pointwise_matmul_equals_the_1x1_convolution():
    kx, kk = jax.random.split(jax.random.PRNGKey(3))
    x = jax.random.normal(kx, (2, 5, 7, 12))
    kernel = jax.random.normal(kk, (1, 1, 12, 9))
    _assert_same_values_and_gradients(
        lambda x, k: pointwise_matmul(x, k, jax.lax.Precision.HIGHEST),
        x, kernel, (1, 1), "SAME", 1, seed=2)


def test_bfloat16_inputs_accumulate_in_float32_and_return_bfloat16():
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 8, 8, 4)).astype(jnp.bfloat16)
    dw = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 1, 4)).astype(jnp.bfloat16)
    pw = jax.random.normal(jax.random.PRNGKey(2), (1, 1, 4, 6)).astype(jnp.bfloat16)
    f32 = lambda a: a.astype(jnp.float32)  # noqa: E731
    for got, want in ((depthwise_shifts(x, dw, (1, 1), "SAME"), _lax(f32(x), f32(dw), (1, 1), "SAME", 4)),
                      (pointwise_matmul(x, pw), _lax(f32(x), f32(pw), (1, 1), "SAME", 1))):
        assert got.dtype == jnp.bfloat16
        np.testing.assert_allclose(f32(got), want, rtol=2e-2, atol=2e-2)


def _conv_params(fn, *args):
    """feature_group_count of every lax convolution in fn's jaxpr (traced afresh: the setting is
    read at trace time, and JAX caches traces by function)."""
    jaxpr = jax.make_jaxpr(lambda *a: fn(*a))(*args)
    return [eqn.params["feature_group_count"] for eqn in jaxpr.jaxpr.eqns
            if eqn.primitive.name == "conv_general_dilated"]


def test_selection_by_backend_environment_and_scope(monkeypatch):
    init = nnx.initializers.lecun_normal()
    depthwise = layers.DepthwiseConv2d(4, 3, kernel_init=init, rngs=nnx.Rngs(0))
    pointwise = layers.Conv2d(4, 6, 1, kernel_init=init, rngs=nnx.Rngs(0))
    strided = layers.Conv2d(6, 6, 3, 2, kernel_init=init, rngs=nnx.Rngs(0))  # always lax

    def block(x):
        return strided(pointwise(depthwise(x)))

    x = jnp.ones((1, 6, 6, 4))
    monkeypatch.delenv("FLAXNETS_CONV_IMPL", raising=False)
    assert jax.default_backend() == "cpu"
    assert layers.conv_unrolled()  # auto on the CPU
    assert _conv_params(block, x) == [1]  # only the 3x3 stride-2 dense conv stays lax
    with conv_implementation("lax"):
        assert _conv_params(block, x) == [4, 1, 1]
    monkeypatch.setenv("FLAXNETS_CONV_IMPL", "lax")
    assert _conv_params(block, x) == [4, 1, 1]
    with conv_implementation("unrolled"):
        assert _conv_params(block, x) == [1]
    monkeypatch.setenv("FLAXNETS_CONV_IMPL", "fast")
    with pytest.raises(FlaxnetsError, match="FLAXNETS_CONV_IMPL='fast'; expected one of auto"):
        block(x)
    with pytest.raises(FlaxnetsError, match="expected one of auto, lax, unrolled"):
        with conv_implementation("winograd"):
            pass


def test_a_model_gives_the_same_logits_either_way():
    """(The Keras parity tests compare whole models through the unrolled forms with Keras's
    lax convolutions.)"""
    model = flaxnets.create_model("mobilenet_v3_small", num_classes=10, rngs=nnx.Rngs(0),
                                  padding="symmetric")
    model.eval()
    graphdef, state = nnx.split(model)
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 48, 48, 3))
    logits = {}
    for impl in ("lax", "unrolled"):
        with conv_implementation(impl):
            logits[impl] = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, x)
    np.testing.assert_allclose(logits["unrolled"], logits["lax"], rtol=1e-4, atol=1e-5)

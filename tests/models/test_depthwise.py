"""Depthwise convolutions: the sum-of-shifts form used on CPU equals the grouped convolution
(values and gradients, TF SAME and symmetric padding, strides 1 and 2, odd sizes), the
selection follows FLAXNETS_DEPTHWISE / `depthwise_implementation`, and a whole model gives the
same logits either way."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import flaxnets
from flaxnets.errors import FlaxnetsError
from flaxnets.models import layers
from flaxnets.models.layers import depthwise_implementation, depthwise_shifts


def _grouped(x, kernel, strides, padding):
    return jax.lax.conv_general_dilated(
        x, kernel, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1], precision=jax.lax.Precision.HIGHEST)


@pytest.mark.parametrize("kernel_size,stride,padding,size", [
    (3, 1, "SAME", (13, 10)), (5, 2, "SAME", (16, 11)), (3, 2, ((1, 1), (1, 1)), (15, 14)),
])
def test_shifts_equal_the_grouped_convolution_and_its_gradients(kernel_size, stride, padding, size):
    kx, kk, kg = jax.random.split(jax.random.PRNGKey(kernel_size * 10 + stride), 3)
    x = jax.random.normal(kx, (2, *size, 7))
    kernel = jax.random.normal(kk, (kernel_size, kernel_size, 1, 7))
    strides = (stride, stride)
    want = _grouped(x, kernel, strides, padding)
    got = depthwise_shifts(x, kernel, strides, padding)
    assert got.shape == want.shape and got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

    cotangent = jax.random.normal(kg, want.shape)
    grads = [jax.grad(lambda x, k, f=f: jnp.sum(f(x, k, strides, padding) * cotangent),
                      argnums=(0, 1))(x, kernel) for f in (_grouped, depthwise_shifts)]
    for want_grad, got_grad in zip(*grads, strict=True):
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-4, atol=1e-4)


def test_bfloat16_input_accumulates_in_float32_and_returns_bfloat16():
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 8, 8, 4)).astype(jnp.bfloat16)
    kernel = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 1, 4)).astype(jnp.bfloat16)
    got = depthwise_shifts(x, kernel, (1, 1), "SAME")
    want = _grouped(x.astype(jnp.float32), kernel.astype(jnp.float32), (1, 1), "SAME")
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(got.astype(jnp.float32), want, rtol=2e-2, atol=2e-2)


def _has_grouped_conv(fn, *args):
    jaxpr = jax.make_jaxpr(fn)(*args)
    return any(eqn.primitive.name == "conv_general_dilated"
               and eqn.params["feature_group_count"] > 1 for eqn in jaxpr.jaxpr.eqns)


def test_selection_by_backend_environment_and_scope(monkeypatch):
    layer = layers.DepthwiseConv2d(4, 3, kernel_init=nnx.initializers.lecun_normal(),
                                   rngs=nnx.Rngs(0))
    x = jnp.ones((1, 6, 6, 4))
    monkeypatch.delenv("FLAXNETS_DEPTHWISE", raising=False)
    assert jax.default_backend() == "cpu"
    assert layers.depthwise_uses_shifts()  # auto on CPU
    assert not _has_grouped_conv(lambda x: layer(x), x)
    with depthwise_implementation("conv"):
        assert _has_grouped_conv(lambda x: layer(x), x)
    monkeypatch.setenv("FLAXNETS_DEPTHWISE", "conv")
    assert _has_grouped_conv(lambda x: layer(x), x)
    with depthwise_implementation("shifts"):
        assert not _has_grouped_conv(lambda x: layer(x), x)
    monkeypatch.setenv("FLAXNETS_DEPTHWISE", "fast")
    with pytest.raises(FlaxnetsError, match="FLAXNETS_DEPTHWISE='fast'; expected one of auto"):
        layer(x)
    with pytest.raises(FlaxnetsError, match="expected one of auto, conv, shifts"):
        with depthwise_implementation("winograd"):
            pass


def test_a_model_gives_the_same_logits_either_way():
    """(The Keras parity tests compare whole models on CPU, i.e. through the shifts, with
    Keras's grouped convolutions.)"""
    model = flaxnets.create_model("mobilenet_v3_small", num_classes=10, rngs=nnx.Rngs(0),
                                  padding="symmetric")
    model.eval()
    graphdef, state = nnx.split(model)
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 48, 48, 3))
    logits = {}
    for impl in ("conv", "shifts"):
        with depthwise_implementation(impl):
            logits[impl] = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, x)
    np.testing.assert_allclose(logits["shifts"], logits["conv"], rtol=1e-4, atol=1e-5)

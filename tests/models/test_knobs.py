"""Creation knobs: dropout / stochastic depth, dtype, bn_group_size, padding, initialisers,
param_kinds and error messages."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from flaxnets.errors import FlaxnetsError
from flaxnets.models import create_model, get_spec, param_kinds
from flaxnets.models.layers import BatchNorm, Conv2d, initializers

FORWARD = nnx.jit(lambda m, x: m(x))
FORWARD_TRAIN = nnx.jit(lambda m, x, r: m(x, rngs=r))


def _images(batch=2, size=32, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(batch, size, size, 3)), jnp.float32)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet_lite0", "mobilenet_v2"])  # B0: Keras parity
def test_family_forward_train_and_eval(make_model, name):
    model = make_model(name, num_classes=5)
    model.eval()
    y = FORWARD(model, _images())
    assert y.shape == (2, 5) and y.dtype == jnp.float32 and np.isfinite(np.asarray(y)).all()
    model.train()
    y = FORWARD_TRAIN(model, _images(), nnx.Rngs(dropout=0))
    assert y.shape == (2, 5) and np.isfinite(np.asarray(y)).all()


@pytest.mark.slow
def test_dropout_follows_rngs_in_train_mode_only(make_model):
    model = make_model("mobilenet_v3_small", num_classes=10, dropout_rate=0.5)
    model.train()
    x = _images()
    a = FORWARD_TRAIN(model, x, nnx.Rngs(dropout=1))
    b = FORWARD_TRAIN(model, x, nnx.Rngs(dropout=1))
    c = FORWARD_TRAIN(model, x, nnx.Rngs(dropout=2))
    assert np.array_equal(a, b) and not np.allclose(a, c)
    with pytest.raises(FlaxnetsError, match="rngs"):
        model(x)
    model.eval()
    assert np.array_equal(FORWARD(model, x), FORWARD_TRAIN(model, x, nnx.Rngs(dropout=2)))


@pytest.mark.slow
def test_no_dropout_means_rngs_do_not_matter(make_model):
    model = make_model("mobilenet_v3_small", num_classes=10, dropout_rate=0.0)
    model.train()
    x = _images()
    assert np.array_equal(FORWARD_TRAIN(model, x, nnx.Rngs(dropout=1)),
                          FORWARD_TRAIN(model, x, nnx.Rngs(dropout=2)))


@pytest.mark.slow
def test_stochastic_depth_drops_residual_branches_in_train_mode(make_model):
    model = make_model("mobilenet_v3_small", num_classes=10, dropout_rate=0.0,
                       stochastic_depth_rate=0.5)
    model.train()
    x = _images()
    assert not np.allclose(FORWARD_TRAIN(model, x, nnx.Rngs(dropout=1)),
                           FORWARD_TRAIN(model, x, nnx.Rngs(dropout=2)))


@pytest.mark.slow
def test_bfloat16_compute_is_close_to_float32_with_float32_logits(make_model):
    f32 = make_model("mobilenet_v3_small", num_classes=10)
    bf16 = make_model("mobilenet_v3_small", num_classes=10, dtype="bfloat16")
    f32.eval()
    bf16.eval()
    x = _images()
    a, b = FORWARD(f32, x), FORWARD(bf16, x)
    assert b.dtype == jnp.float32
    assert nnx.state(bf16, nnx.Param)["stem_conv"]["kernel"].value.dtype == jnp.float32
    assert not np.array_equal(a, b)  # really computed in bfloat16
    assert float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a))) < 0.05


def test_bn_group_size_normalises_each_group_like_numpy():
    bn = BatchNorm(3, momentum=0.9, epsilon=1e-3, group_size=4)
    x = np.random.default_rng(0).normal(2.0, 3.0, (8, 5, 5, 3)).astype(np.float32)
    y = np.asarray(bn(jnp.asarray(x)))
    groups = x.reshape(2, 4, 5, 5, 3)
    mean = groups.mean(axis=(1, 2, 3), keepdims=True)
    var = groups.var(axis=(1, 2, 3), keepdims=True)
    expected = ((groups - mean) / np.sqrt(var + 1e-3)).reshape(x.shape)
    np.testing.assert_allclose(y, expected, atol=1e-5)
    np.testing.assert_allclose(bn.mean.value, 0.1 * mean.reshape(2, 3).mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.var.value, 0.9 + 0.1 * var.reshape(2, 3).mean(0), rtol=1e-5)
    with pytest.raises(FlaxnetsError, match="multiple of bn_group_size"):
        bn(jnp.zeros((6, 5, 5, 3)))


@pytest.mark.parametrize("shape,group", [((8, 5, 5, 3), 4), ((8, 3), None), ((8, 3), 4)])
def test_unbiased_moving_variance_moves_towards_the_bessel_corrected_variance(shape, group):
    """`moving_variance="unbiased"` (TF-Vision's fused Keras BatchNorm) moves the running variance
    towards n / (n - 1) times the batch variance, n the values one moment averages over (per group),
    while the batch is normalised with the biased one either way; "biased" moves it towards the
    biased variance. The 2-D cases are MobileNetV4's pre-logits norm on pooled features, where n
    is the examples alone (8 / 7 or 4 / 3 here)."""
    x = np.random.default_rng(1).normal(2.0, 3.0, shape).astype(np.float32)
    groups = x.reshape((-1, group or shape[0]) + shape[1:])
    axes = tuple(range(1, groups.ndim - 1))
    outputs = {}
    for estimate, ddof in (("biased", 0), ("unbiased", 1)):
        bn = BatchNorm(3, momentum=0.0, group_size=group, moving_variance=estimate)
        outputs[estimate] = np.asarray(bn(jnp.asarray(x)))
        expected = groups.var(axis=axes, ddof=ddof).reshape(-1, 3).mean(0)
        np.testing.assert_allclose(bn.var.value, expected, rtol=1e-5)
    np.testing.assert_array_equal(outputs["biased"], outputs["unbiased"])
    with pytest.raises(FlaxnetsError, match="moving_variance='bessel'; expected biased or unbiased"):
        BatchNorm(3, moving_variance="bessel")


def test_bn_moving_variance_reaches_every_batch_norm():
    """The `bn_moving_variance` knob is handed to every BatchNorm of a model, the pre-logits norm
    included (a knob dropped on the way would leave the layers at "biased")."""
    model = create_model("mobilenet_v4_conv_small", num_classes=10, bn_moving_variance="unbiased")
    norms = [m for _, m in nnx.iter_modules(model) if isinstance(m, BatchNorm)]
    assert norms and {bn.moving_variance for bn in norms} == {"unbiased"}
    assert model.pre_logits_bn.moving_variance == "unbiased"
    with pytest.raises(FlaxnetsError, match="bn_moving_variance='bessel'"):
        create_model("mobilenet_v4_conv_small", bn_moving_variance="bessel")


@pytest.mark.slow
def test_bn_group_size_makes_a_model_see_each_group_alone(make_model):
    grouped = make_model("mobilenet_v3_small", num_classes=10, dropout_rate=0.0, bn_group_size=2)
    whole = make_model("mobilenet_v3_small", num_classes=10, dropout_rate=0.0)
    grouped.train()
    whole.train()
    # 96 px keeps several pixels per channel at the last stage, so batch statistics of two
    # examples are well conditioned and float rounding is not amplified.
    x = _images(batch=4, size=96)
    rngs = nnx.Rngs(dropout=0)
    together = FORWARD_TRAIN(grouped, x, rngs)
    apart = jnp.concatenate([FORWARD_TRAIN(whole, x[:2], rngs), FORWARD_TRAIN(whole, x[2:], rngs)])
    np.testing.assert_allclose(together, apart, rtol=1e-4, atol=1e-4)
    assert not np.allclose(together, FORWARD_TRAIN(whole, x, rngs), atol=1e-3)


@pytest.mark.parametrize("padding, tap", [("same", (0, 0)), ("symmetric", (1, 1))])
def test_stride_two_padding(padding, tap):
    """TF SAME pads a stride-2 3x3 conv on an even input only at the bottom/right, so output
    (0, 0) sees input (0, 0) through kernel tap (0, 0); symmetric padding puts it at (1, 1)."""
    conv = Conv2d(1, 1, 3, 2, padding=padding, kernel_init=jax.nn.initializers.normal(),
                  rngs=nnx.Rngs(0))
    x = jnp.zeros((1, 8, 8, 1)).at[0, 0, 0, 0].set(1.0)
    y = conv(x)
    assert y.shape == (1, 4, 4, 1)
    assert float(y[0, 0, 0, 0]) == pytest.approx(float(conv.kernel.value[tap[0], tap[1], 0, 0]))


@pytest.mark.slow
def test_padding_changes_model_output(make_model):
    same = make_model("mobilenet_v3_small", num_classes=10)
    symmetric = make_model("mobilenet_v3_small", num_classes=10, padding="symmetric")
    same.eval()
    symmetric.eval()
    assert not np.allclose(FORWARD(same, _images()), FORWARD(symmetric, _images()))


@pytest.mark.slow
def test_initializer_schemes_follow_the_tf_fans():
    key = jax.random.key(0)
    tpu, vision = initializers("tf_tpu"), initializers("tf_vision")
    conv = tpu["conv"](key, (3, 3, 64, 128))
    assert float(conv.std()) == pytest.approx(np.sqrt(2.0 / (9 * 128)), rel=0.05)
    depthwise = tpu["depthwise"](key, (5, 5, 1, 512))  # TF layout (5, 5, 512, 1): fan_out 25
    assert float(depthwise.std()) == pytest.approx(np.sqrt(2.0 / 25), rel=0.05)
    dense = tpu["dense"](key, (256, 1000))
    assert float(jnp.abs(dense).max()) <= 1 / np.sqrt(1000) + 1e-6
    assert float(vision["conv"](key, (3, 3, 64, 128)).std()) == pytest.approx(
        np.sqrt(1.0 / (9 * 64)), rel=0.05)
    assert float(jnp.abs(vision["dense"](key, (256, 1000))).max()) <= 0.05
    assert get_spec("efficientnet_b0").kernel_init == "tf_tpu"
    assert get_spec("mobilenet_v3_large").kernel_init == "tf_vision"


def test_param_kinds_by_module_type(small_model):
    kinds = param_kinds(small_model)
    assert kinds[("stem_conv", "kernel")] == "conv_kernel"
    assert kinds[("blocks", 0, "depthwise_conv", "kernel")] == "depthwise_kernel"
    assert kinds[("blocks", 0, "se", "reduce", "bias")] == "bias"
    assert kinds[("blocks", 0, "depthwise_bn", "scale")] == "bn_scale"
    assert kinds[("blocks", 0, "depthwise_bn", "bias")] == "bn_bias"
    assert kinds[("classifier", "kernel")] == kinds[("pre_logits", "kernel")] == "dense_kernel"
    depthwise = {p for p, k in kinds.items() if k == "depthwise_kernel"}
    assert depthwise == {("blocks", i, "depthwise_conv", "kernel") for i in range(11)}
    assert sum(k == "bn_scale" for k in kinds.values()) == sum(
        k == "bn_bias" for k in kinds.values()) == 2 + 11 * 2 + 10  # stem, head, blocks


def test_unknown_name_and_override_errors_suggest():
    with pytest.raises(FlaxnetsError, match="'mobilenet_v3_large'"):
        create_model("mobilenet_v3_larg")
    with pytest.raises(FlaxnetsError, match="did you mean 'dropout_rate'"):
        create_model("mobilenet_v3_small", droput_rate=0.1)
    with pytest.raises(FlaxnetsError, match="padding"):
        create_model("mobilenet_v3_small", padding="valid")
    with pytest.raises(FlaxnetsError, match="activation"):
        create_model("mobilenet_v3_small", activation="mish")


def test_numpy_initialisers_match_the_scheme_statistics():
    """The NumPy-backed initialisers draw from the documented distributions, deterministically."""
    import numpy as np

    from flaxnets.models.layers import initializers

    key = jax.random.key(3)
    conv = initializers("tf_tpu")["conv"](key, (3, 3, 64, 256))
    # TF-TPU's conv_kernel_initializer: tf.random_normal with std sqrt(2 / fan_out), untruncated.
    # Of 147,456 draws about 9,300 lie beyond 2 std (4.55%) and about 400 beyond 3 std; a truncated
    # normal has none beyond 2 std (before its rescaling) and none beyond 2.28 std after it.
    expected_std = np.sqrt(2.0 / (3 * 3 * 256))
    assert conv.dtype == jnp.float32
    assert abs(float(conv.std()) / expected_std - 1) < 0.02
    beyond = np.abs(np.asarray(conv)) / expected_std
    assert 0.04 < float((beyond > 2).mean()) < 0.051
    assert float((beyond > 3).mean()) > 0.002
    depthwise = initializers("tf_tpu")["depthwise"](key, (5, 5, 1, 4096))
    assert float((np.abs(np.asarray(depthwise)) / np.sqrt(2.0 / 25) > 2.5).mean()) > 0.008
    dense = initializers("tf_tpu")["dense"](key, (512, 1000))
    limit = np.sqrt(1.0 / 1000)
    assert float(jnp.abs(dense).max()) <= limit and float(jnp.abs(dense).max()) > 0.95 * limit
    again = initializers("tf_tpu")["conv"](key, (3, 3, 64, 256))
    other = initializers("tf_tpu")["conv"](jax.random.key(4), (3, 3, 64, 256))
    assert bool((conv == again).all()) and not bool((conv == other).all())


def test_param_kinds_come_from_the_layers_declarations():
    # A parameter whose module declares no kind is an error, not a silent escape from a mask;
    # declaring it is all a new layer needs.
    class Gain(nnx.Module):
        def __init__(self):
            self.gain = nnx.Param(jnp.ones((3,)))

    holder = nnx.Module()
    holder.gain = Gain()
    with pytest.raises(FlaxnetsError, match="gain/gain has no known kind"):
        param_kinds(holder)
    Gain.PARAM_KINDS = {"gain": "layer_scale"}
    assert param_kinds(holder) == {("gain", "gain"): "layer_scale"}

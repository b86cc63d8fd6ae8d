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


def test_a_family_can_bring_its_own_stem_and_head():
    """An architecture's `network` builds the stem and head (here: no head conv, the pooled
    blocks straight into the classifier); counting and parameter kinds follow the built model."""
    import jax.numpy as jnp

    from flaxnets.models import traced_summary
    from flaxnets.models.blocks import Architecture, InvertedResidual, Knobs, Stage, resolve
    from flaxnets.models.layers import Conv2d, Dense, initializers

    class PoolHead(nnx.Module):
        def __init__(self, arch, knobs, *, rngs):
            stem, configs, _, _ = resolve(arch)
            inits = initializers(knobs.kernel_init)
            self.block_configs = tuple(configs)
            self.stem_conv = Conv2d(3, stem, 3, 2, kernel_init=inits["conv"], rngs=rngs)
            self.blocks = nnx.List([c.block_type(c, knobs, inits, rngs=rngs) for c in configs])
            self.classifier = Dense(configs[-1].out_channels, knobs.num_classes,
                                    kernel_init=inits["dense"], rngs=rngs)

        def __call__(self, x, *, rngs=None):
            x = self.stem_conv(x)
            for block in self.blocks:
                x = block(x, rngs=rngs)
            return self.classifier(x.mean(axis=(1, 2)))

    arch = Architecture(stages=(Stage(InvertedResidual, 1, 2, 16, InvertedResidual.Args(3, 4)),),
                        stem_channels=8, stem_activation="relu", head_channels=0,
                        head_activation="relu", network=PoolHead)
    model = arch.build(Knobs(num_classes=5), rngs=nnx.Rngs(0))
    model.eval()
    assert model(jnp.zeros((1, 16, 16, 3))).shape == (1, 5)
    # stem 3*3*3*8; block: expand 8*32 + BN, depthwise 9*32 + BN, project 32*16 + BN; 16*5 + 5
    expected = 216 + 256 + 64 + 288 + 64 + 512 + 32 + 85
    assert count_params(model) == sum(r.params for r in traced_summary(model, 16)) == expected
    assert set(param_kinds(model).values()) == {"conv_kernel", "depthwise_kernel", "dense_kernel",
                                                "bias", "bn_scale", "bn_bias"}

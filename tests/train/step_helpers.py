"""Shared by the step, accumulation, mixing and BatchNorm-group tests: a tiny conv net whose
XLA compiles take a second, a loss, a batch of random images and a tree difference."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from flaxnets.models.layers import BatchNorm
from flaxnets.train.losses import cross_entropy_loss

MEAN = (120.0, 110.0, 100.0)
STD = (60.0, 50.0, 40.0)


class TinyConv(nnx.Conv):
    """`nnx.Conv` declaring its parameters' kinds, as every layer that owns parameters must."""

    PARAM_KINDS = {"kernel": "conv_kernel", "bias": "bias"}


class TinyLinear(nnx.Linear):
    """`nnx.Linear` declaring its parameters' kinds."""

    PARAM_KINDS = {"kernel": "dense_kernel", "bias": "bias"}


class TinyNet(nnx.Module):
    """conv 3x3 / 2 -> [BatchNorm] -> ReLU -> global average -> linear; float32 logits."""

    def __init__(self, num_classes=10, *, rngs, batch_norm=True, dtype=jnp.float32):
        self.dtype = dtype
        self.conv = TinyConv(3, 8, (3, 3), strides=(2, 2), dtype=dtype, rngs=rngs)
        self.bn = BatchNorm(8, momentum=0.9) if batch_norm else None
        self.head = TinyLinear(8, num_classes, dtype=dtype, rngs=rngs)

    def __call__(self, x, rngs=None):
        x = self.conv(x.astype(self.dtype))
        if self.bn is not None:
            x = self.bn(x)
        x = nnx.relu(x).mean(axis=(1, 2))
        return self.head(x).astype(jnp.float32)


def loss_fn(logits, labels):
    return cross_entropy_loss(logits, labels, 0.0).mean()


def batch(n=8, size=16, seed=0):
    rng = np.random.RandomState(seed)
    return {"image": rng.randint(0, 256, (n, size, size, 3)).astype(np.uint8),
            "label": (np.arange(n) % 10).astype(np.int32)}


def tree_max_diff(a, b):
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

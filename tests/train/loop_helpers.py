"""Shared by the loop, CLI, accumulation, mixing, pitfall and BatchNorm-group tests: in-process
training runs on the exported digits with a tiny network swapped in for the zoo's.

The zoo network is swapped for a tiny one (conv, BatchNorm, dropout, linear) through
`flaxnets.models.create_model`, which the loop looks up at call time: a MobileNet train step
takes over a minute to compile on 2 CPU cores, and what these tests check is the loop, not the
network.
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import flaxnets.models
from flaxnets.config import apply_overrides
from flaxnets.models.layers import BatchNorm
from flaxnets.recipes import load_recipe
from step_helpers import TinyConv, TinyLinear

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"

# 1,437 training images / 32 = 44 steps per epoch; 0.3 epochs = 13 steps.
OVERRIDES = [
    "train.global_batch_size=32", "train.epochs=0.3", "schedule.warmup_epochs=0", "schedule.base_lr=0.1",
    "eval.every_steps=6", "eval.batch_size=100", "log.every_steps=1", "checkpoint.keep=3",
]
NUM_STEPS = 13


class TinyNet(nnx.Module):
    """conv 3x3 / 2 -> BatchNorm -> ReLU -> 2x2 average pool -> flatten -> dropout -> linear
    (keeps the layout, so a few steps separate the digits)."""

    def __init__(self, num_classes=10, *, rngs, bn_momentum=0.9, dropout_rate=0.1, dtype=jnp.float32, **_):
        self.conv = TinyConv(3, 8, (3, 3), strides=(2, 2), dtype=dtype, rngs=rngs)
        self.bn = BatchNorm(8, momentum=bn_momentum)
        self.dropout = nnx.Dropout(dropout_rate)
        self.head = TinyLinear(8 * 8 * 8, num_classes, dtype=dtype, rngs=rngs)

    def __call__(self, x, rngs=None):
        x = nnx.avg_pool(nnx.relu(self.bn(self.conv(x))), (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        return self.head(self.dropout(x, rngs=rngs)).astype(jnp.float32)


def create_tiny_model(name, *, num_classes=1000, rngs=None, **overrides):
    """Stand-in for `flaxnets.models.create_model` (same signature)."""
    return TinyNet(num_classes, rngs=rngs if rngs is not None else nnx.Rngs(0), **overrides)


def config(*extra):
    return apply_overrides(load_recipe("digits_demo"), OVERRIDES + list(extra))


def train(data_dir, workdir, *extra, stop_after_steps=None):
    """One in-process run with the tiny network."""
    from flaxnets.train.loop import train_and_evaluate

    original = flaxnets.models.create_model
    flaxnets.models.create_model = create_tiny_model
    try:
        return train_and_evaluate(config(*extra), data_dir=str(data_dir), workdir=str(workdir),
                                  stop_after_steps=stop_after_steps)
    finally:
        flaxnets.models.create_model = original


def read_lines(workdir):
    return [json.loads(line) for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines()]


def train_losses(workdir):
    return [(r["step"], r["train_loss"]) for r in read_lines(workdir) if "train_loss" in r]


def saved_state(workdir, step=None):
    """The train state saved in `workdir` (latest step by default), as numpy leaves by path."""
    from flaxnets.train.checkpoint import Checkpointer

    ckpt = Checkpointer(str(workdir), async_save=False, read_only=True)
    try:
        step = ckpt.latest_step() if step is None else step
        state, _ = ckpt.restore(step, None, with_data=False)
    finally:
        ckpt.close()
    return step, {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_leaves_with_path(state)}


class TinyPooledNet(nnx.Module):
    """conv 3x3 / 2 -> BatchNorm -> ReLU -> global average pool -> dropout -> linear: TinyNet for
    any image size (progressive learning trains at several)."""

    def __init__(self, num_classes=10, *, rngs, bn_momentum=0.9, dropout_rate=0.1, dtype=jnp.float32, **_):
        self.conv = TinyConv(3, 16, (3, 3), strides=(2, 2), dtype=dtype, rngs=rngs)
        self.bn = BatchNorm(16, momentum=bn_momentum)
        self.dropout = nnx.Dropout(dropout_rate)
        self.head = TinyLinear(16, num_classes, dtype=dtype, rngs=rngs)

    def __call__(self, x, rngs=None):
        x = nnx.relu(self.bn(self.conv(x))).astype(jnp.float32).mean(axis=(1, 2))
        return self.head(self.dropout(x, rngs=rngs)).astype(jnp.float32)


def create_tiny_pooled_model(name, *, num_classes=1000, rngs=None, **overrides):
    """Stand-in for `flaxnets.models.create_model` that takes any image size."""
    return TinyPooledNet(num_classes, rngs=rngs if rngs is not None else nnx.Rngs(0), **overrides)

"""The training loop end to end on the exported digits: the loss falls, runs are deterministic,
an interrupted run resumes exactly, evaluation counts every image once, and 4 devices give the
losses of 1 (BatchNorm over the global batch).

The zoo network is swapped for a tiny one (conv, BatchNorm, dropout, linear) through
`flaxnets.models.create_model`, which the loop looks up at call time: a MobileNet train step
takes over a minute to compile on 2 CPU cores, and what these tests check is the loop, not the
network. The runs are module-scoped and shared between the tests.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import flaxnets.models
from flaxnets.config import apply_overrides
from flaxnets.models.layers import BatchNorm
from flaxnets.recipes import load_recipe

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
        self.conv = nnx.Conv(3, 8, (3, 3), strides=(2, 2), dtype=dtype, rngs=rngs)
        self.bn = BatchNorm(8, momentum=bn_momentum)
        self.dropout = nnx.Dropout(dropout_rate)
        self.head = nnx.Linear(8 * 8 * 8, num_classes, dtype=dtype, rngs=rngs)

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


@pytest.fixture(scope="module")
def runs(digits, tmp_path_factory):
    """Two full runs with the same seed, and one stopped after step 5 then resumed to the end."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    out["a"] = train(digits, root / "a")
    out["b"] = train(digits, root / "b")
    out["stopped"] = train(digits, root / "resumed", stop_after_steps=5)
    out["resumed"] = train(digits, root / "resumed")
    out["dirs"] = {name: root / name for name in ("a", "b", "resumed")}
    return out


pytestmark = pytest.mark.slow


def test_the_loss_falls(runs):
    losses = [loss for _, loss in train_losses(runs["dirs"]["a"])]
    assert len(losses) == NUM_STEPS
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.1
    assert runs["a"]["step"] == NUM_STEPS and runs["a"]["eval_top1"] > 0.2  # chance is 0.1


def test_same_seed_gives_identical_losses_and_weights(runs):
    assert train_losses(runs["dirs"]["a"]) == train_losses(runs["dirs"]["b"])
    step_a, a = saved_state(runs["dirs"]["a"])
    step_b, b = saved_state(runs["dirs"]["b"])
    assert step_a == step_b == NUM_STEPS
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_interrupted_run_resumes_exactly(runs):
    assert runs["stopped"]["step"] == 5 and not runs["stopped"]["preempted"]
    assert "eval_top1" not in runs["stopped"]  # step 5 is not on the evaluation schedule
    assert runs["resumed"]["step"] == NUM_STEPS
    # metrics.jsonl of the resumed run: steps 1..13 once each, equal to the uninterrupted run.
    assert train_losses(runs["dirs"]["resumed"]) == train_losses(runs["dirs"]["a"])
    assert [r["step"] for r in read_lines(runs["dirs"]["resumed"]) if "train_loss" in r] == list(range(1, NUM_STEPS + 1))
    _, a = saved_state(runs["dirs"]["a"])
    _, r = saved_state(runs["dirs"]["resumed"])
    for key in a:
        np.testing.assert_array_equal(a[key], r[key], err_msg=key)
    assert runs["resumed"]["eval_top1"] == runs["a"]["eval_top1"]


@pytest.mark.parametrize("batch_size", [7, 64, 100, 360, 500])
def test_evaluation_counts_every_validation_image_once(runs, digits, batch_size):
    # Pitfall 4: 360 images whatever the batch (padding masked out, nothing dropped).
    from flaxnets.train.evaluate import evaluate_workdir

    original = flaxnets.models.create_model
    flaxnets.models.create_model = create_tiny_model
    try:
        result = evaluate_workdir(runs["dirs"]["a"], digits, batch_size=batch_size)
    finally:
        flaxnets.models.create_model = original
    assert result["eval_count"] == 360
    assert result["step"] == NUM_STEPS
    # Same weights, same images: the same accuracy as the run's own final evaluation.
    assert result["eval_top1"] == pytest.approx(runs["a"]["eval_top1"], abs=1e-9)


def test_the_runs_evaluations_count_360_images(runs):
    evals = [r for r in read_lines(runs["dirs"]["a"]) if "eval_count" in r]
    assert [r["step"] for r in evals] == [6, 12, 13]
    assert all(r["eval_count"] == 360 for r in evals)


ONE_DEVICE_SCRIPT = """
import json, sys
sys.path[:0] = [{here!r}, {src!r}]
import jax
assert jax.device_count() == 1, jax.devices()
import test_loop
test_loop.train({data!r}, {workdir!r}, stop_after_steps=5)
"""


def test_one_device_gives_the_losses_of_four(runs, digits, tmp_path):
    # Pitfall 11: BatchNorm moments over the global batch, so the device count changes nothing
    # but float summation order. Five steps are enough to see BatchNorm, the loss and the
    # updates agree.
    workdir = tmp_path / "one"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu")
    script = ONE_DEVICE_SCRIPT.format(here=str(HERE), src=str(SRC), data=str(digits), workdir=str(workdir))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert jax.device_count() == 4
    four = train_losses(runs["dirs"]["a"])[:5]
    one = train_losses(workdir)
    assert [s for s, _ in one] == [s for s, _ in four]
    np.testing.assert_allclose([v for _, v in one], [v for _, v in four], rtol=2e-4)

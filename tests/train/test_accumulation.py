"""Gradient accumulation: k micro-batches make one optimizer step equal to one step over the same
examples without accumulation, and the schedule, the optimizer count and the EMA advance once per
optimizer step, never once per micro-step (RECIPES.md pitfall 6), in the step and in the loop.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from flaxnets.train.state import create_train_state
from flaxnets.train.step import ema_decay_at, make_train_step
from loop_helpers import read_lines, saved_state, train
from step_helpers import MEAN, STD, TinyNet, batch, loss_fn, tree_max_diff


def halving(step):
    """A schedule whose every step differs, so a micro-step count would show."""
    return 0.01 * 0.5 ** jnp.asarray(step, jnp.float32)


def run_steps(grad_accum_steps, mesh=None, num_steps=3):
    """`num_steps` Adam steps with the halving schedule and an EMA, on batches of 16 (no
    BatchNorm, whose moments are per micro-batch); returns (states after each step, metrics)."""
    model = TinyNet(rngs=nnx.Rngs(0), batch_norm=False)
    tx = optax.chain(optax.scale_by_adam(), optax.scale_by_learning_rate(halving))
    graphdef, state = create_train_state(model, tx, seed=0, ema=True)
    initial = jax.tree.map(np.asarray, state)
    step = make_train_step(graphdef, tx, loss_fn=loss_fn, mean=MEAN, std=STD, grad_accum_steps=grad_accum_steps,
                           ema_decay=0.999, ema_dynamic_decay=True, learning_rate_fn=halving, mesh=mesh)
    states, metrics = [initial], []
    for seed in range(num_steps):
        state, m = step(state, batch(16, seed=seed))
        states.append(jax.tree.map(np.asarray, state))
        metrics.append(jax.tree.map(float, m))
    return states, metrics


# Compiling the three steps takes most of a minute on 2 busy cores; every test here is slow.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stepped():
    # "4 on 4 devices": micro-batches of 4 split over the mesh, one example per device.
    from flaxnets.train import parallel

    return {"1": run_steps(1), "4": run_steps(4), "4 on 4 devices": run_steps(4, parallel.make_mesh())}


@pytest.mark.parametrize("accumulated", ["4", "4 on 4 devices"])
def test_accumulated_steps_equal_full_batch_steps_with_adam_schedule_and_ema(stepped, accumulated):
    (full, m_full), (accum, m_accum) = stepped["1"], stepped[accumulated]
    for s in range(1, 4):
        assert tree_max_diff(full[s].params, accum[s].params) < 1e-5, s
        assert tree_max_diff(full[s].ema_params, accum[s].ema_params) < 1e-5, s
        assert m_accum[s - 1]["train_loss"] == pytest.approx(m_full[s - 1]["train_loss"], rel=1e-5)
        assert m_accum[s - 1]["grad_norm"] == pytest.approx(m_full[s - 1]["grad_norm"], rel=1e-4)
    # The weights really moved, so the comparison can fail.
    assert tree_max_diff(full[0].params, full[3].params) > 1e-3


def test_schedule_optimizer_count_and_ema_advance_once_per_optimizer_step(stepped):
    states, metrics = stepped["4"]
    for s in range(1, 4):
        state = states[s]
        assert int(state.step) == s
        # Adam's count: one update per optimizer step (4 micro-steps would make it 4 s).
        assert int(state.opt_state[0].count) == s
        # The logged rate is the one the update of step s used: schedule(s - 1).
        assert metrics[s - 1]["learning_rate"] == pytest.approx(float(halving(s - 1)), rel=1e-6)
        # One EMA update with step s's decay.
        d = float(ema_decay_at(0.999, s, True))
        once = jax.tree.map(lambda e, p: d * e + (1 - d) * p, states[s - 1].ema_params, state.params)
        assert tree_max_diff(state.ema_params, once) < 1e-6, s
    # Four updates (one per micro-step) would have been visibly different.
    p = states[1].params
    four = states[0].ema_params
    for s in range(1, 5):
        d = float(ema_decay_at(0.999, s, True))
        four = jax.tree.map(lambda e, q: d * e + (1 - d) * q, four, p)
    assert tree_max_diff(states[1].ema_params, four) > 1e-4


# ----------------------------------------------------------------------------------- Loop ----

LOOP_STEPS = 4  # 0.1 epoch of 44 steps


def test_loop_with_accumulation_logs_the_schedule_and_averages_once_per_optimizer_step(digits, tmp_path):
    from flaxnets.train.schedules import build_schedule
    from loop_helpers import config

    extra = ["train.grad_accum_steps=2", "train.epochs=0.1", "schedule.name=cosine",
             "schedule.decay_epochs=0.2", "ema.decay=0.99",
             "checkpoint.every_steps=1", f"checkpoint.keep={LOOP_STEPS}", "checkpoint.keep_best=false"]
    workdir = tmp_path / "run"
    result = train(digits, workdir, *extra)
    assert result["step"] == LOOP_STEPS

    # The logged learning rate of step s is the schedule at s - 1 optimizer steps (a cosine over 8
    # steps, so counting the 2 micro-steps per step would log other values).
    schedule = build_schedule(config(*extra), 1437)
    lines = [r for r in read_lines(workdir) if "learning_rate" in r]
    assert [r["step"] for r in lines] == list(range(1, LOOP_STEPS + 1))
    for r in lines:
        assert r["learning_rate"] == pytest.approx(float(schedule(r["step"] - 1)), rel=1e-6)
        assert np.isfinite(r["train_loss"])
    assert len({r["learning_rate"] for r in lines}) == LOOP_STEPS

    # Each saved step: the step counter, the optimizer's counts (Adam's, its learning rate's and
    # the decoupled weight decay's learning rate's) and one EMA update with that step's decay.
    saved = {s: saved_state(workdir, s)[1] for s in range(1, LOOP_STEPS + 1)}
    for s in range(2, LOOP_STEPS + 1):
        state, before = saved[s], saved[s - 1]
        assert int(state["['step']"]) == s
        counts = [v for k, v in state.items() if k.startswith("['opt_state']") and k.endswith("['count']")]
        assert len(counts) == 3 and all(int(c) == s for c in counts), counts
        d = float(ema_decay_at(0.99, s, True))
        ema_keys = [k for k in state if k.startswith("['ema_params']")]
        assert len(ema_keys) == 6
        for key in ema_keys:
            param = state["['params']" + key[len("['ema_params']"):]]
            np.testing.assert_allclose(state[key], d * before[key] + (1 - d) * param, rtol=1e-5, atol=1e-7,
                                       err_msg=f"{key} at step {s}")

"""BatchNorm per group of N examples (`model.bn_group_size`, the TF references' per-replica BN)
through the jitted train step on the 4-device mesh: one step over a batch of groups equals the
average of steps over each group alone (loss, SGD update and running statistics), permuting
examples within a group changes nothing, and across groups it does. Under gradient accumulation
the groups are formed inside each micro-batch (micro-batch j holds examples j, j+k, j+2k, ...).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from flaxnets.config import apply_overrides
from flaxnets.models.layers import BatchNorm
from flaxnets.recipes import load_recipe
from flaxnets.train import parallel
from flaxnets.train.state import create_train_state
from flaxnets.train.step import make_train_step
from step_helpers import MEAN, STD, TinyNet, batch, loss_fn

BATCH = 16
GROUP = 4  # = BATCH / 4 devices: one group per device, as per-replica BN
MOMENTUM = 0.9


def group_size_from_recipe():
    """bn_group_size as a recipe override hands it to create_model."""
    config = apply_overrides(load_recipe("efficientnet_b0_tpu"), [f"model.bn_group_size={GROUP}"])
    return config.model.overrides()["bn_group_size"]


def build(bn_group_size):
    """TinyNet whose BatchNorm takes the group size, as the zoo's blocks do."""
    model = TinyNet(rngs=nnx.Rngs(0))
    model.bn = BatchNorm(8, momentum=MOMENTUM, group_size=bn_group_size)
    tx = optax.sgd(0.5)
    graphdef, state = create_train_state(model, tx, seed=0)
    return graphdef, tx, jax.tree.map(np.asarray, state)


def run(step, state, b):
    """One step from a fresh copy of `state` (the step donates it); numpy results."""
    new, metrics = step(jax.tree.map(jnp.array, state), b)
    return jax.tree.map(np.asarray, new), jax.tree.map(float, metrics)


def take(b, rows):
    return {k: v[np.asarray(rows)] for k, v in b.items()}


def tree_mean(trees):
    return jax.tree.map(lambda *xs: np.mean(xs, axis=0), *trees)


def assert_trees_close(a, b, atol=2e-5):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=2e-5, atol=atol)


@pytest.fixture(scope="module")
def setup():
    group = group_size_from_recipe()
    assert group == GROUP
    mesh = parallel.make_mesh()
    graphdef, tx, state = build(group)
    grouped = make_train_step(graphdef, tx, loss_fn=loss_fn, mean=MEAN, std=STD, mesh=mesh)
    whole_graphdef, _, whole_state = build(None)
    # Same initial weights: the group size changes no parameter.
    assert_trees_close(state.params, whole_state.params, atol=0)
    whole = make_train_step(whole_graphdef, tx, loss_fn=loss_fn, mean=MEAN, std=STD)
    return {"state": state, "grouped": grouped, "whole": whole, "mesh": mesh, "graphdef": graphdef, "tx": tx}


@pytest.mark.slow
def test_grouped_step_equals_the_mean_of_steps_over_each_group_alone(setup):
    state, b = setup["state"], batch(BATCH)
    new, metrics = run(setup["grouped"], state, b)
    alone = [run(setup["whole"], state, take(b, range(g, g + GROUP))) for g in range(0, BATCH, GROUP)]
    # The loss is the mean over groups; with SGD the update is the mean of the group updates; the
    # running statistics move towards the mean of the group moments: momentum * old + 0.1 * mean.
    assert metrics["train_loss"] == pytest.approx(np.mean([m["train_loss"] for _, m in alone]), rel=1e-5)
    assert_trees_close(new.params, tree_mean([s.params for s, _ in alone]))
    assert_trees_close(new.batch_stats, tree_mean([s.batch_stats for s, _ in alone]))
    # Statistics over the whole batch would differ (the groups' variances are smaller).
    whole, whole_metrics = run(setup["whole"], state, b)
    assert abs(whole_metrics["train_loss"] - metrics["train_loss"]) > 1e-4
    assert np.all(whole.batch_stats["bn"]["var"].value > new.batch_stats["bn"]["var"].value)
    assert not np.allclose(whole.batch_stats["bn"]["mean"].value, state.batch_stats["bn"]["mean"].value)


@pytest.mark.slow
def test_permuting_within_groups_changes_nothing_and_across_groups_changes_the_step(setup):
    state, b = setup["state"], batch(BATCH)
    _, base = run(setup["grouped"], state, b)
    rng = np.random.default_rng(0)
    within = np.concatenate([g + rng.permutation(GROUP) for g in range(0, BATCH, GROUP)])
    assert not np.array_equal(within, np.arange(BATCH))
    _, same = run(setup["grouped"], state, take(b, within))
    assert same["train_loss"] == pytest.approx(base["train_loss"], rel=1e-5)
    assert same["grad_norm"] == pytest.approx(base["grad_norm"], rel=1e-4)
    across = np.arange(BATCH)
    across[[0, GROUP]] = across[[GROUP, 0]]  # swap the first examples of groups 0 and 1
    _, other = run(setup["grouped"], state, take(b, across))
    assert abs(other["train_loss"] - base["train_loss"]) > 1e-4


@pytest.mark.slow
def test_under_accumulation_groups_are_formed_inside_each_micro_batch(setup):
    # k = 2: micro-batch j holds examples j, j+2, ...; its 8 examples make 2 groups of 4. The
    # running statistics take one BatchNorm update per optimizer step, with the mean of the moments
    # of all groups of all micro-batches.
    state, b = setup["state"], batch(BATCH)
    k = 2
    step = make_train_step(setup["graphdef"], setup["tx"], loss_fn=loss_fn, mean=MEAN, std=STD,
                           grad_accum_steps=k, mesh=setup["mesh"])
    new, metrics = run(step, state, b)
    groups = [[np.arange(j, BATCH, k)[g:g + GROUP] for g in range(0, BATCH // k, GROUP)] for j in range(k)]
    alone = [[run(setup["whole"], state, take(b, rows)) for rows in micro] for micro in groups]
    flat = [r for micro in alone for r in micro]
    assert metrics["train_loss"] == pytest.approx(np.mean([m["train_loss"] for _, m in flat]), rel=1e-5)
    assert_trees_close(new.params, tree_mean([s.params for s, _ in flat]))
    # Each group-alone step did old -> 0.9 * old + 0.1 * moments from the initial stats.
    moments = tree_mean([jax.tree.map(lambda n, o: (n - MOMENTUM * o) / (1 - MOMENTUM), s.batch_stats,
                                      state.batch_stats) for s, _ in flat])
    once = jax.tree.map(lambda o, m: MOMENTUM * o + (1 - MOMENTUM) * m, state.batch_stats, moments)
    assert_trees_close(new.batch_stats, once)
    chained = state.batch_stats
    for micro in alone:  # k chained updates (momentum**k per step): what must not happen
        m = tree_mean([jax.tree.map(lambda n, o: (n - MOMENTUM * o) / (1 - MOMENTUM), s.batch_stats,
                                    state.batch_stats) for s, _ in micro])
        chained = jax.tree.map(lambda o, m: MOMENTUM * o + (1 - MOMENTUM) * m, chained, m)
    assert max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(new.batch_stats),
                                                          jax.tree.leaves(chained))) > 1e-4


@pytest.mark.parametrize("overrides, micro_batch", [
    (["model.bn_group_size=12"], 2048),
    (["train.global_batch_size=64", "model.bn_group_size=12", "train.grad_accum_steps=4"], 16),
    # Larger than the micro-batch: adapted to it unless the recipe is kept verbatim (test_adapt.py).
    (["train.global_batch_size=64", "model.bn_group_size=32", "train.grad_accum_steps=4",
      "train.adapt_to_data=false"], 16),
    (["model.bn_group_size=0"], 2048),
])
def test_a_group_size_that_does_not_divide_the_forward_pass_is_refused_by_the_config(overrides, micro_batch):
    # Checked when the overrides are applied, before any data or device is touched; the model
    # alone would fail only when the first step is traced.
    from flaxnets.errors import UsageError

    with pytest.raises(UsageError, match=rf"model.bn_group_size=\d+: expected a positive divisor of the {micro_batch} "):
        apply_overrides(load_recipe("efficientnet_b0_tpu"), overrides)
    assert apply_overrides(load_recipe("efficientnet_b0_tpu"), ["model.bn_group_size=256"]).model.bn_group_size == 256


@pytest.mark.slow
def test_the_loop_builds_the_model_with_the_recipes_group_size(tmp_path, monkeypatch):
    # The loop hands config.model.overrides() to create_model; a stand-in records the group size
    # and builds the grouped TinyNet, and one step of 32 examples on 4 devices runs with it.
    from flaxnets.data.digits import export_digits
    from loop_helpers import create_tiny_model, read_lines, train

    built = []

    def create_grouped(name, *, num_classes=1000, rngs=None, bn_group_size=None, **overrides):
        model = create_tiny_model(name, num_classes=num_classes, rngs=rngs, **overrides)
        model.bn = BatchNorm(8, momentum=model.bn.momentum, group_size=bn_group_size)
        built.append(bn_group_size)
        return model

    export_digits(tmp_path / "digits", size=32)
    monkeypatch.setattr("loop_helpers.create_tiny_model", create_grouped)
    result = train(tmp_path / "digits", tmp_path / "run", "train.epochs=0.023", "model.bn_group_size=8")
    assert built == [8]
    assert result["step"] == 1
    assert [np.isfinite(r["train_loss"]) for r in read_lines(tmp_path / "run") if "train_loss" in r] == [True]

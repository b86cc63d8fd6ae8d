"""Checkpointer: round trip of an NNX/Optax state and the data position, keep-last-K plus best."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from flaxnets.train.checkpoint import Checkpointer, abstract_like


def _state(seed=0):
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(seed))
    params = nnx.state(model, nnx.Param)
    opt_state = optax.adamw(1e-3).init(params)
    return {"params": params, "opt_state": opt_state, "step": jnp.asarray(7, jnp.int32),
            "rng": jax.random.PRNGKey(seed)}


def _equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def test_round_trip_state_and_data_position(tmp_path):
    state = _state(0)
    ckpt = Checkpointer(str(tmp_path), keep=2)
    ckpt.save(7, state, data_state={"epoch": 1, "position": 33})
    ckpt.save(8, state, data_state=b'{"raw": 1}')
    ckpt.close()

    ckpt = Checkpointer(str(tmp_path), keep=2)
    assert ckpt.latest_step() == 8
    restored, data = ckpt.restore(7, abstract_like(_state(1)))
    assert _equal(restored, state)
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    assert data == {"epoch": 1, "position": 33}
    _, raw = ckpt.restore(8, abstract_like(state))
    assert raw == b'{"raw": 1}'
    # Without a target: the arrays as saved, on the host.
    host, _ = ckpt.restore(7, None, with_data=False)
    assert all(isinstance(x, np.ndarray) for x in jax.tree.leaves(host)) and _equal(host, state)
    ckpt.close()


def test_keeps_last_k_and_best(tmp_path):
    state = _state(0)
    ckpt = Checkpointer(str(tmp_path), keep=2, keep_best=True)
    top1 = {1: 0.5, 2: 0.9, 3: 0.4, 4: 0.3, 5: 0.2}
    for step, acc in top1.items():
        ckpt.save(step, state, metrics={"eval_top1": acc})
    ckpt.save(6, state)  # a mid-epoch save without evaluation metrics
    ckpt.manager.wait_until_finished()
    assert ckpt.all_steps() == [2, 5, 6]
    assert ckpt.best_step() == 2
    assert ckpt.latest_step() == 6
    ckpt.close()


def test_reading_a_run_back_logs_no_orbax_notice(tmp_path, caplog):
    # eval / predict / export open the checkpoints read-only: no library notice on the console.
    ckpt = Checkpointer(str(tmp_path), keep=2)
    ckpt.save(1, _state(0))
    ckpt.close()
    caplog.set_level("INFO")
    reader = Checkpointer(str(tmp_path), keep=2, async_save=False, read_only=True)
    assert reader.latest_step() == 1
    reader.close()
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_small_replicated_arrays_are_saved_whole_not_sliced_per_replica(tmp_path, monkeypatch):
    """Data parallelism replicates the whole train state over the devices. Orbax's default save
    cuts every replicated array into one slice per replica, each a `lax.slice` compiled for its
    shape (the first save of an EfficientNet-B0 state on 4 CPU devices: 4,112 slices, 10.5 s);
    arrays under REPLICA_PARALLEL_MIN_BYTES are written whole. Here 24 small arrays of shapes not
    seen before, on 2 devices: our save compiles no slice, Orbax's default (threshold 0) compiles
    one per shape, and both read back equal."""
    from jax.sharding import NamedSharding, PartitionSpec

    from flaxnets.train import checkpoint

    replicated = NamedSharding(jax.make_mesh((2,), ("data",), devices=jax.devices()[:2]), PartitionSpec())
    compiles, counting = [], [False]

    def listener(event, _seconds, **_):
        if counting[0] and event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)

    def compiles_in_a_save(min_bytes: int, first_rows: int) -> int:
        monkeypatch.setattr(checkpoint, "REPLICA_PARALLEL_MIN_BYTES", min_bytes)
        state = {f"a{i}": jax.device_put(np.full((2 * (first_rows + i), 3), i, np.float32), replicated)
                 for i in range(24)}
        ckpt = Checkpointer(str(tmp_path / str(min_bytes)), keep=1, keep_best=False)
        compiles.clear()
        counting[0] = True
        try:
            ckpt.save(1, state)
            ckpt.close()
        finally:
            counting[0] = False
        reader = Checkpointer(str(tmp_path / str(min_bytes)), read_only=True)
        restored, _ = reader.restore(1, abstract_like(state))
        reader.close()
        assert _equal(restored, state)
        return len(compiles)

    try:
        assert compiles_in_a_save(checkpoint.REPLICA_PARALLEL_MIN_BYTES, first_rows=1001) == 0
        assert compiles_in_a_save(0, first_rows=2001) >= 24  # Orbax's default: a slice per shape
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)

"""Mesh, batch sharding and the batch-size check."""

import jax
import numpy as np
import pytest

from flaxnets.errors import FlaxnetsError, UsageError
from flaxnets.train import parallel


def test_mesh_and_batch_sharding_split_examples_over_devices():
    mesh = parallel.make_mesh()
    assert mesh.axis_names == ("data",) and mesh.devices.size == jax.device_count() == 4
    batch = {"image": np.arange(8 * 2, dtype=np.uint8).reshape(8, 2), "label": np.arange(8, dtype=np.int32)}
    sharded = parallel.shard_batch(batch, mesh)
    assert sharded["image"].shape == (8, 2)
    assert [s.data.shape for s in sharded["label"].addressable_shards] == [(2,)] * 4
    np.testing.assert_array_equal(np.asarray(sharded["label"]), batch["label"])


def test_batch_size_must_split_into_devices_and_micro_steps():
    parallel.check_batch_size(16, 4, 2)
    with pytest.raises(FlaxnetsError, match=r"global_batch_size=12 .* 4 devices x 2 grad_accum_steps = 8"):
        parallel.check_batch_size(12, 4, 2)


def test_distributed_flags_must_come_together(monkeypatch):
    with pytest.raises(UsageError, match="must be given together"):
        parallel.initialize_distributed("localhost:1234", None, None)
    with pytest.raises(UsageError, match="HOST:PORT"):
        parallel.initialize_distributed("localhost", 2, 0)
    with pytest.raises(UsageError, match="--process-id 2"):
        parallel.initialize_distributed("localhost:1", 2, 2)
    assert parallel.initialize_distributed("localhost:1", 1, 0) is False
    for var in ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE",
                "TPU_WORKER_HOSTNAMES"):
        monkeypatch.delenv(var, raising=False)
    assert parallel.initialize_distributed() is False
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert parallel._cluster_detected()


@pytest.mark.parametrize("value", ["soon", "0", "-5", "1.5"])
def test_a_bad_heartbeat_timeout_is_named_before_connecting(monkeypatch, value):
    monkeypatch.setenv("FLAXNETS_HEARTBEAT_TIMEOUT", value)
    with pytest.raises(UsageError, match=f"FLAXNETS_HEARTBEAT_TIMEOUT='{value}': expected a whole number"):
        parallel.initialize_distributed("127.0.0.1:1", 2, 0)


def test_the_heartbeat_timeout_reaches_jax(monkeypatch):
    calls = []
    monkeypatch.setattr(parallel.jax.distributed, "initialize", lambda **kw: calls.append(kw))
    monkeypatch.setenv("FLAXNETS_HEARTBEAT_TIMEOUT", "15")
    assert parallel.initialize_distributed("127.0.0.1:1", 2, 1) is True
    monkeypatch.delenv("FLAXNETS_HEARTBEAT_TIMEOUT")
    assert parallel.initialize_distributed("127.0.0.1:1", 2, 1) is True
    assert calls == [
        {"coordinator_address": "127.0.0.1:1", "num_processes": 2, "process_id": 1,
         "heartbeat_timeout_seconds": 15},
        {"coordinator_address": "127.0.0.1:1", "num_processes": 2, "process_id": 1},
    ]

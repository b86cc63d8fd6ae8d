"""Devices, the data-parallel mesh, batch sharding and multi-process start.

One mesh axis, "data": the batch is split along it and the train state is replicated. With
`jax.jit` over a batch sharded this way, reductions over the batch (the loss, BatchNorm moments)
are global, so BatchNorm statistics are synchronised across devices without any extra code.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from flaxnets.errors import FlaxnetsError, UsageError
from flaxnets.text import plural

DATA_AXIS = "data"

# Environment variables that say this process is one of several launched by a cluster manager
# that `jax.distributed.initialize()` can read by itself.
_CLUSTER_SIZE_VARS = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def _cluster_detected() -> bool:
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        return True
    for var in _CLUSTER_SIZE_VARS:
        try:
            if int(os.environ.get(var, "1")) > 1:
                return True
        except ValueError:
            continue
    # A TPU pod slice lists every worker; a single TPU VM lists one (or nothing).
    return "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")


def initialize_distributed(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> bool:
    """Start `jax.distributed` when the run spans several processes; returns True if it did.

    Explicit flags win; otherwise JAX's own cluster detection is used when the environment says
    this is one process of a SLURM / Open MPI / TPU-pod job. Must run before any other JAX call.
    """
    explicit = (coordinator, num_processes, process_id)
    if any(v is not None for v in explicit):
        if any(v is None for v in explicit):
            raise UsageError(
                "--coordinator, --num-processes and --process-id must be given together "
                f"(got {coordinator!r}, {num_processes!r}, {process_id!r})"
            )
        if ":" not in coordinator:
            raise UsageError(f"--coordinator {coordinator!r}: expected HOST:PORT")
        if not 0 <= process_id < num_processes:
            raise UsageError(f"--process-id {process_id}: expected 0 <= id < --num-processes {num_processes}")
        if num_processes == 1:
            return False
        jax.distributed.initialize(
            coordinator_address=coordinator, num_processes=num_processes, process_id=process_id,
            **_heartbeat_timeout(),
        )
        return True
    if _cluster_detected():
        jax.distributed.initialize(**_heartbeat_timeout())
        return True
    return False


def _heartbeat_timeout() -> dict:
    """`FLAXNETS_HEARTBEAT_TIMEOUT=S`: after S seconds without heartbeats from a process, JAX's
    coordination service declares it dead and stops the others (JAX's default: 100 s)."""
    value = os.environ.get("FLAXNETS_HEARTBEAT_TIMEOUT")
    if not value:
        return {}
    try:
        seconds = int(value)
    except ValueError:
        seconds = 0
    if seconds < 1:
        raise UsageError(f"FLAXNETS_HEARTBEAT_TIMEOUT={value!r}: expected a whole number of seconds >= 1")
    return {"heartbeat_timeout_seconds": seconds}


def make_mesh(devices=None) -> Mesh:
    """A one-axis ("data") mesh over `devices` (default: every device of every process)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding of the train state: a full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """The sharding of a batch: split along its first (example) axis over the data axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(global_batch: int, num_devices: int, grad_accum_steps: int = 1) -> None:
    """Raise a one-line error unless `global_batch` splits evenly into devices x micro-steps."""
    if global_batch % (num_devices * grad_accum_steps):
        raise FlaxnetsError(
            f"train.global_batch_size={global_batch} is not divisible by "
            f"{plural(num_devices, 'device')} x {grad_accum_steps} grad_accum_steps = {num_devices * grad_accum_steps}"
        )


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    """Turn this process's share of a batch (numpy) into global arrays sharded on "data"."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def replicate(tree, mesh: Mesh):
    """Place a pytree (identical on every process) on every device of the mesh."""
    sharding = replicated(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)

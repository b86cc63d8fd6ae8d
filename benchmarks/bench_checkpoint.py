"""Checkpoint saves of a zoo model's train state replicated over several devices: flaxnets'
Checkpointer as it is (replicated arrays under `REPLICA_PARALLEL_MIN_BYTES` written whole by their
first replica) against Orbax's default (every replicated array cut into one slice per replica).

    PYTHONPATH=src python benchmarks/bench_checkpoint.py [--model efficientnet_b0] [--devices 4] [--saves 3] [--json]

Each setting runs in a fresh process (compiled slices stay cached within a process, so the first
save is the one that pays), on `--devices` CPU devices (forced with XLA's host device count).
The state is a train state's shape: parameters, a copy as EMA weights, two optimizer slots per
parameter, BatchNorm statistics and a step, every array replicated (data parallelism). Printed
per setting: the seconds each `save` call blocked and the seconds until the last write finished.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def one_setting(model_name: str, min_bytes: int | None, saves: int) -> dict:
    import jax
    import numpy as np
    from flax import nnx
    from jax.sharding import NamedSharding, PartitionSpec

    from flaxnets.models import create_model
    from flaxnets.train import checkpoint

    if min_bytes is not None:
        checkpoint.REPLICA_PARALLEL_MIN_BYTES = min_bytes
    model = create_model(model_name)
    params = nnx.state(model, nnx.Param)
    stats = nnx.state(model, nnx.BatchStat)
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    replicated = NamedSharding(mesh, PartitionSpec())

    def copy(tree):
        return jax.tree.map(np.array, nnx.to_pure_dict(tree))

    tree = {"params": copy(params), "ema_params": copy(params), "mu": copy(params), "nu": copy(params),
            "batch_stats": copy(stats), "step": np.int32(0)}
    state = jax.device_put(tree, replicated)
    leaves = jax.tree.leaves(state)
    with tempfile.TemporaryDirectory() as workdir:
        ckpt = checkpoint.Checkpointer(workdir, keep=saves)
        blocked = []
        start = time.perf_counter()
        for step in range(1, saves + 1):
            t = time.perf_counter()
            ckpt.save(step, state)
            blocked.append(time.perf_counter() - t)
        ckpt.close()
        total = time.perf_counter() - start
    return {"model": model_name, "devices": jax.device_count(), "arrays": len(leaves),
            "arrays_over_min_bytes": sum(x.nbytes >= checkpoint.REPLICA_PARALLEL_MIN_BYTES for x in leaves),
            "min_bytes": checkpoint.REPLICA_PARALLEL_MIN_BYTES, "save_blocked_s": [round(b, 3) for b in blocked],
            "all_written_s": round(total, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_b0")
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--saves", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--_one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._one is not None:
        min_bytes = None if args._one == "flaxnets" else int(args._one)
        print(json.dumps(one_setting(args.model, min_bytes, args.saves)))
        return 0

    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={args.devices}", JAX_PLATFORMS="cpu")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    rows = []
    for setting, label in (("flaxnets", "flaxnets (REPLICA_PARALLEL_MIN_BYTES)"), ("0", "Orbax default (slice every array)")):
        done = subprocess.run([sys.executable, __file__, "--model", args.model, "--saves", str(args.saves),
                               "--_one", setting], env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return done.returncode
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["setting"] = label
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    first = rows[0]
    print(f"{first['model']}: {first['arrays']} replicated arrays on {first['devices']} CPU devices, "
          f"{first['arrays_over_min_bytes']} of them >= {first['min_bytes']:,} bytes")
    print(f"{'setting':40s} {'each save blocked (s)':>28s} {'all written (s)':>16s}")
    for row in rows:
        blocked = ", ".join(f"{b:.2f}" for b in row["save_blocked_s"])
        print(f"{row['setting']:40s} {blocked:>28s} {row['all_written_s']:>16.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

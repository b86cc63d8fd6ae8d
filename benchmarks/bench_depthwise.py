"""Depthwise convolution on the current JAX backend: XLA's grouped convolution against
flaxnets' sum of shifts (`flaxnets.models.layers.depthwise_shifts`), forward and forward +
backward, for the depthwise layer shapes of EfficientNet-B0 / MobileNet v3 at 224 px.

    PYTHONPATH=src python benchmarks/bench_depthwise.py [--batch 16] [--repeats 3] [--json]

On the CPU backend the shifted sum is what flaxnets uses (FLAXNETS_DEPTHWISE=auto); on GPU and
TPU it keeps the grouped convolution. The script prints both so either choice can be checked.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

# (spatial size, channels, kernel, stride) of typical depthwise layers at 224 px.
SHAPES = [(112, 96, 3, 2), (56, 144, 3, 1), (28, 240, 5, 1), (14, 480, 3, 1), (7, 1152, 5, 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp

    from flaxnets.models.layers import depthwise_shifts

    def grouped(x, kernel, strides):
        return jax.lax.conv_general_dilated(
            x, kernel, strides, "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=x.shape[-1])

    def shifts(x, kernel, strides):
        return depthwise_shifts(x, kernel, strides, "SAME")

    def seconds(fn, *operands):
        jax.block_until_ready(fn(*operands))  # compile + warm up
        start = time.perf_counter()
        for _ in range(args.repeats):
            jax.block_until_ready(fn(*operands))
        return (time.perf_counter() - start) / args.repeats

    rows = []
    key = jax.random.PRNGKey(0)
    for size, channels, k, stride in SHAPES:
        x = jax.random.normal(key, (args.batch, size, size, channels))
        kernel = jax.random.normal(key, (k, k, 1, channels))
        row = {"shape": [args.batch, size, size, channels], "kernel": k, "stride": stride}
        for name, fn in (("grouped", grouped), ("shifts", shifts)):
            forward = jax.jit(lambda x, w, fn=fn: fn(x, w, (stride, stride)))
            backward = jax.jit(jax.grad(
                lambda x, w, fn=fn: jnp.sum(fn(x, w, (stride, stride)) ** 2), argnums=(0, 1)))
            row[f"{name}_forward_ms"] = 1e3 * seconds(forward, x, kernel)
            row[f"{name}_forward_backward_ms"] = 1e3 * seconds(backward, x, kernel)
        rows.append(row)

    machine = (f"{platform.machine()}, {os.cpu_count()} CPUs, JAX {jax.__version__} "
               f"{jax.default_backend()}, {time.strftime('%Y-%m-%d')}")
    if args.json:
        print(json.dumps({"machine": machine, "rows": rows}))
        return 0
    print(machine)
    print(f"{'input':>22s} {'k':>2s} {'s':>2s} | {'grouped fwd':>11s} {'shifts fwd':>10s} "
          f"{'x':>5s} | {'grouped f+b':>11s} {'shifts f+b':>10s} {'x':>5s}")
    for r in rows:
        print(f"{str(tuple(r['shape'])):>22s} {r['kernel']:2d} {r['stride']:2d} | "
              f"{r['grouped_forward_ms']:9.1f}ms {r['shifts_forward_ms']:8.1f}ms "
              f"{r['grouped_forward_ms'] / r['shifts_forward_ms']:5.1f} | "
              f"{r['grouped_forward_backward_ms']:9.1f}ms {r['shifts_forward_backward_ms']:8.1f}ms "
              f"{r['grouped_forward_backward_ms'] / r['shifts_forward_backward_ms']:5.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Convolutions on the current JAX backend: `lax.conv_general_dilated` against flaxnets'
unrolled forms, forward and forward + backward, for typical layer shapes of EfficientNet-B0 /
MobileNet v3 at 224 px: depthwise convolutions against the sum of shifted slices
(`flaxnets.models.layers.depthwise_shifts`) and 1x1 convolutions against the matrix product
(`flaxnets.models.layers.pointwise_matmul`).

    PYTHONPATH=src python benchmarks/bench_conv_impl.py [--batch 16] [--repeats 3] [--json]

On the CPU backend flaxnets uses the unrolled forms (FLAXNETS_CONV_IMPL=auto); on GPU and TPU it
keeps lax convolutions. The script prints both so either choice can be checked.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

# (spatial size, input channels, output channels, kernel, stride) of typical layers at 224 px:
# depthwise (input = output channels, k > 1) and pointwise (1x1) convolutions.
SHAPES = [(112, 96, 96, 3, 2), (56, 144, 144, 3, 1), (28, 240, 240, 5, 1), (14, 480, 480, 3, 1),
          (7, 1152, 1152, 5, 1), (56, 144, 24, 1, 1), (28, 40, 240, 1, 1), (14, 480, 80, 1, 1),
          (7, 192, 1152, 1, 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp

    from flaxnets.models.layers import depthwise_shifts, pointwise_matmul

    def lax_conv(x, kernel, strides):
        return jax.lax.conv_general_dilated(
            x, kernel, strides, "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=x.shape[-1] // kernel.shape[2])

    def unrolled(x, kernel, strides):
        if kernel.shape[2] == 1 and kernel.shape[0] > 1:
            return depthwise_shifts(x, kernel, strides, "SAME")
        return pointwise_matmul(x, kernel)

    def seconds(fn, *operands):
        jax.block_until_ready(fn(*operands))  # compile + warm up
        start = time.perf_counter()
        for _ in range(args.repeats):
            jax.block_until_ready(fn(*operands))
        return (time.perf_counter() - start) / args.repeats

    rows = []
    key = jax.random.PRNGKey(0)
    for size, channels, out_channels, k, stride in SHAPES:
        x = jax.random.normal(key, (args.batch, size, size, channels))
        depthwise = k > 1
        kernel = jax.random.normal(key, (k, k, 1 if depthwise else channels, out_channels))
        row = {"kind": "depthwise" if depthwise else "pointwise",
               "shape": [args.batch, size, size, channels], "out_channels": out_channels,
               "kernel": k, "stride": stride}
        for name, fn in (("lax", lax_conv), ("unrolled", unrolled)):
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
    print(f"{'kind':>9s} {'input':>20s} {'out':>5s} {'k':>2s} {'s':>2s} | {'lax fwd':>9s} "
          f"{'unrolled':>9s} {'x':>5s} | {'lax f+b':>9s} {'unrolled':>9s} {'x':>5s}")
    for r in rows:
        print(f"{r['kind']:>9s} {str(tuple(r['shape'])):>20s} {r['out_channels']:5d} "
              f"{r['kernel']:2d} {r['stride']:2d} | "
              f"{r['lax_forward_ms']:7.1f}ms {r['unrolled_forward_ms']:7.1f}ms "
              f"{r['lax_forward_ms'] / r['unrolled_forward_ms']:5.1f} | "
              f"{r['lax_forward_backward_ms']:7.1f}ms {r['unrolled_forward_backward_ms']:7.1f}ms "
              f"{r['lax_forward_backward_ms'] / r['unrolled_forward_backward_ms']:5.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

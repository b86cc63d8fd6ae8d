"""LiteRT (TFLite) float32 and int8 vs ONNX Runtime float32: file size and single-image CPU
latency, one thread each, side by side in one run.

For each of mobilenet_v3_large, mobilenet_v3_small, mobilenet_v4_conv_small,
mobilenet_v4_conv_medium, efficientnet_lite0 and efficientnet_b0 (random weights with random
BatchNorm statistics, built by the tests' helper: latency does not depend on the values) this
exports the model at its resolution with `flaxnets.export.tflite` (float32, then int8 calibrated
on `--calibration-images` random pixel images, which fixes ranges but not speed) and with
`flaxnets.export.onnx`, then times single-image inference: the LiteRT interpreter with
`num_threads=1` (its default XNNPACK delegate, as on a phone) and an onnxruntime CPU session with
one intra-op and one inter-op thread. Each runtime takes `--rounds` turns of `--runs` timed
invocations after `--warmup` untimed ones; the median over all timed runs is reported, with the
machine and date, and the number of XNNPACK delegate partitions of each LiteRT file (1: the whole
graph runs in XNNPACK).

With `--qat` each model is also exported as the int8 file of a quantization-aware run
(`quant.mode=qat`, `flaxnets.quant`), through the path `flaxnets export --format tflite --int8`
takes for one (`export_tflite(..., qat=...)`: Qwix's learned ranges, no calibration): the
network (built with BatchNorm momentum 0, so its running statistics are those of the last batch)
is wrapped with Qwix's QAT fake quantization at its resolution and run `--qat-steps` times in
train mode on batches of `--qat-batch` random normalised images, which is how QAT training
learns each activation range (a running mean of the per-batch min/max); no weight is updated
(latency does not depend on the weights). Its row then also gives the file's size, latency,
partitions, whether every op is a builtin int8 op (no DEQUANTIZE, no custom op), and the top-1
agreement and largest relative logit difference from the fake-quantized JAX network on 8
random images.

Usage (needs flaxnets[litert] and onnxruntime; on a shared machine run it nice'd and say so):
    nice -n 10 PYTHONPATH=src python benchmarks/bench_tflite.py --runs 50 --rounds 3 [--qat]
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = " ".join(
    f for f in os.environ.get("XLA_FLAGS", "").split() if "force_host_platform_device_count" not in f)

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

# The test helpers build zoo models with random weights and BatchNorm statistics.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

MODELS = ["mobilenet_v3_large", "mobilenet_v3_small", "mobilenet_v4_conv_small", "mobilenet_v4_conv_medium",
          "efficientnet_lite0", "efficientnet_b0"]


def cpu_features() -> str:
    """The CPU's vector extensions XNNPACK's int8 kernels depend on (Linux /proc/cpuinfo), e.g.
    "avx2, avx512f, avx512_vnni"; int8 is only faster than float32 where the CPU has int8 dot
    products (VNNI and the like)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "CPU flags unknown"
    known = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    wanted = [f for f in flags.split(":", 1)[1].split() if f in known]
    return ", ".join(wanted) or "no AVX2"


def median_ms(run, x, *, runs: int, warmup: int) -> list[float]:
    """`runs` timed calls of run(x) after `warmup` untimed ones, in milliseconds."""
    for _ in range(warmup):
        run(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def qat_export(model, path: Path, prep, *, steps: int, batch: int):
    """The int8 LiteRT file of `model` trained quantization-aware (see the module docstring) at
    `path`, and its checks: whole graph in XNNPACK, builtin int8 ops only, agreement with the
    fake-quantized network."""
    import jax.numpy as jnp
    from flax import nnx

    from flaxnets import quant
    from flaxnets.config import QuantConfig
    from flaxnets.export.tflite import export_tflite, operator_names, relative_difference, xnnpack_partitions

    config = QuantConfig(mode="qat")
    r = prep.resolution
    qmodel = quant.quantize_for_training(model, config, image_size=r)  # train mode
    learn = nnx.jit(lambda m, x: m(x, rngs=nnx.Rngs(dropout=0)))
    rng = np.random.default_rng(2)
    for _ in range(steps):
        learn(qmodel, jnp.asarray(rng.standard_normal((batch, r, r, 3)), jnp.float32))
    qmodel.eval()
    assert not quant.untrained_ranges(qmodel)
    path = export_tflite(qmodel, path, prep=prep, qat=config)
    ops = operator_names(path)
    images = rng.integers(0, 256, (8, r, r, 3), np.uint8)
    difference, agreement = relative_difference(qmodel, path, images, mean=prep.mean, std=prep.std)
    return path, {"qat_whole_graph_xnnpack": xnnpack_partitions(path)[1],
                  "qat_builtin_int8": not [op for op in ops if op.startswith(("CUSTOM", "STABLEHLO")) or
                                           op in ("DEQUANTIZE", "HARD_SWISH")],
                  "qat_ops": len(ops), "qat_agreement": agreement,
                  "qat_relative_difference": round(difference, 4)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--runs", type=int, default=50, help="timed invocations per round")
    parser.add_argument("--rounds", type=int, default=3, help="turns each runtime takes")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--calibration-images", type=int, default=32)
    parser.add_argument("--qat", action="store_true",
                        help="also the int8 file of a quantization-aware (Qwix) network, its ranges learned")
    parser.add_argument("--qat-steps", type=int, default=4, help="--qat: train-mode passes that learn the ranges")
    parser.add_argument("--qat-batch", type=int, default=8, help="--qat: images per pass")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)

    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    from flaxnets.export.onnx import export_onnx
    from flaxnets.export.tflite import Preprocessing, export_tflite, xnnpack_partitions
    from flaxnets.models import get_spec
    from weights.weights_helpers import build

    rows = []
    folder = Path(tempfile.mkdtemp(prefix="bench_tflite_"))
    for name in args.models:
        spec = get_spec(name)
        r = spec.resolution
        model = build(name, 0, bn_momentum=0.0) if args.qat else build(name, 0)
        prep = Preprocessing(r, spec.crop_fraction, spec.interpolation, spec.mean, spec.std)
        pixels = np.random.default_rng(1).integers(0, 256, (args.calibration_images, r, r, 3), np.uint8)
        paths = {
            "litert_float32": export_tflite(model, folder / f"{name}.tflite", prep=prep),
            "litert_int8": export_tflite(model, folder / f"{name}_int8.tflite", prep=prep, calibration=pixels),
            "onnx_float32": export_onnx(model, folder / f"{name}.onnx", resolution=r),
        }
        litert = ["litert_float32", "litert_int8"]
        qat_checks = {}
        if args.qat:
            start = time.perf_counter()
            paths["litert_qat_int8"], qat_checks = qat_export(model, folder / f"{name}_qat_int8.tflite", prep,
                                                               steps=args.qat_steps, batch=args.qat_batch)
            qat_checks["qat_export_s"] = round(time.perf_counter() - start, 1)
            litert.append("litert_qat_int8")
        runners = {}
        for kind in litert:
            interpreter = Interpreter(model_path=str(paths[kind]), num_threads=1)
            interpreter.allocate_tensors()
            detail = interpreter.get_input_details()[0]

            def run(x, interpreter=interpreter, index=detail["index"]):
                interpreter.set_tensor(index, x)
                interpreter.invoke()

            x = np.zeros(detail["shape"], detail["dtype"])
            runners[kind] = (run, x)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(paths["onnx_float32"]), options, providers=["CPUExecutionProvider"])
        runners["onnx_float32"] = (lambda x, s=session: s.run(["logits"], {"input": x}),
                                   np.zeros((1, r, r, 3), np.float32))
        times = {kind: [] for kind in runners}
        for _ in range(args.rounds):
            for kind, (run, x) in runners.items():
                times[kind] += median_ms(run, x, runs=args.runs, warmup=args.warmup)
        row = {"model": name, "resolution": r}
        for kind in runners:
            row[f"{kind}_mb"] = round(paths[kind].stat().st_size / 1e6, 2)
            row[f"{kind}_ms"] = round(statistics.median(times[kind]), 2)
        for kind in litert:
            row[f"{kind}_partitions"] = xnnpack_partitions(paths[kind])[0]
        row.update(qat_checks)
        rows.append(row)
        print(json.dumps(row), flush=True)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{datetime.date.today()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs ({cpu_features()}), load average {load:.1f}, nice {os.nice(0)}, "
          f"{args.rounds} rounds x {args.runs} runs, one thread per runtime")
    print("| model | LiteRT float32 MB | LiteRT int8 MB | ONNX MB | XNNPACK partitions float32 / int8 | "
          "LiteRT float32 ms | LiteRT int8 ms | ONNX Runtime float32 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['model']} ({row['resolution']}) | {row['litert_float32_mb']} | {row['litert_int8_mb']} | "
              f"{row['onnx_float32_mb']} | {row['litert_float32_partitions']} / {row['litert_int8_partitions']} | "
              f"{row['litert_float32_ms']} | {row['litert_int8_ms']} | {row['onnx_float32_ms']} |")
    if args.qat:
        print("\n| model | LiteRT float32 MB | PTQ int8 MB | QAT int8 MB | XNNPACK partitions float32 / PTQ / QAT | "
              "LiteRT float32 ms | PTQ int8 ms | QAT int8 ms | QAT int8 builtin int8 ops only | "
              "QAT int8 vs fake-quant JAX: top-1 agreement, largest relative difference |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
        for row in rows:
            print(f"| {row['model']} ({row['resolution']}) | {row['litert_float32_mb']} | {row['litert_int8_mb']} | "
                  f"{row['litert_qat_int8_mb']} | {row['litert_float32_partitions']} / "
                  f"{row['litert_int8_partitions']} / {row['litert_qat_int8_partitions']} | "
                  f"{row['litert_float32_ms']} | {row['litert_int8_ms']} | {row['litert_qat_int8_ms']} | "
                  f"{'yes' if row['qat_builtin_int8'] else 'no'} | {row['qat_agreement']:.0%}, "
                  f"{row['qat_relative_difference']:.2e} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

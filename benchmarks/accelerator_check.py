"""One prepared check for a lent accelerator (one GPU, or a TPU host): every figure in one run,
written as JSON and as a Markdown table, within about 8 minutes.

Sections, in this order (each is timed against `--budget-s`; one that would not fit, or that
fails, is recorded as skipped with its reason and the rest still run):

1. train: images/s and compile time of the real recipe train step
   (`flaxnets.train.benchmark.benchmark_model`, what `flaxnets benchmark model --mode train`
   runs) at bfloat16 for MobileNetV3-Large, EfficientNet-B0 and MobileNetV4-Conv-M, with each
   model's reference recipe; the first model again with `data.augment_on=device` (the step
   then also applies the recipe's augmentation); and timm's models in the same run (AMP
   bfloat16, channels_last, `torch.compile`, `bench_model_timm_gpu.timm_train_benchmark`).
   timm rows are skipped, with the reason, where torch/timm or CUDA are missing.
2. depthwise: forward + backward of the depthwise convolutions of those networks, `lax`
   (`lax.conv_general_dilated`) against the unrolled form (`flaxnets.models.layers
   .depthwise_shifts`), bfloat16 and float32, with the largest difference between the two.
3. augment: the device augmentation's own cost per batch (RandAugment(2, 15) and AutoAugment v0,
   jitted on the accelerator, compile time apart) and the pixels where it differs from the host
   ops on the same photos and draws (0 on the CPU backend; tests/data/test_augment_device.py).
4. pipeline: training images/s of the input pipeline (region decode, crop, resize, flip and
   RandAugment(2, 15)) with 1, 2, 4, ... up to all host cores, augmentation on the host and on
   the device (the host then only draws the choices); Grain worker processes when Grain is
   installed, else plain processes each running the same per-example function.

Without an accelerator the script exits with status 2 and one line saying so; `--dry-run`
runs every section on tiny sizes on whatever JAX has (the CPU here) to prove the script works.

    PYTHONPATH=src python benchmarks/accelerator_check.py [--out DIR] [--budget-s 450]
    PYTHONPATH=src python benchmarks/accelerator_check.py --dry-run --out /tmp/check

What the GPU machine must be given (it has Python 3.12, jax 0.11 with CUDA, flax, optax,
orbax, torch, timm and OpenCV, and no network): this repository (src/ on PYTHONPATH);
scikit-image (the sample photos) and PyTurboJPEG (region decode; OpenCV decode is used
without it) as wheels if absent; Grain's wheel (`grain`, with its dependencies) for the
pipeline rows to use Grain workers. Install carried wheels with
`pip install --no-index --find-links WHEELS grain scikit-image`.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # torch and JAX share the device

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

MODELS = ("mobilenet_v3_large", "efficientnet_b0", "mobilenet_v4_conv_medium")
#: Our model -> timm's (the same architectures; timm is only used here, on the GPU machine).
TIMM_MODELS = {"mobilenet_v3_large": ("mobilenetv3_large_100", {"drop_rate": 0.2}),
               "efficientnet_b0": ("efficientnet_b0", {"drop_rate": 0.2, "drop_path_rate": 0.2}),
               "mobilenet_v4_conv_medium": ("mobilenetv4_conv_medium", {"drop_rate": 0.2})}
#: (spatial size, channels, kernel, stride) of depthwise layers of the three networks at 224 px.
DEPTHWISE = [(112, 96, 3, 2), (56, 144, 3, 1), (28, 240, 5, 1), (14, 480, 3, 1), (7, 1152, 5, 1)]

FULL = {"batch": 256, "resolution": None, "steps": 30, "warmup": 5, "conv_batch": 64,
        "conv_repeats": 10, "pipeline_images": 128, "pipeline_image_size": 224, "files": 64,
        "augment_batch": 128, "augment_size": 224, "augment_repeats": 10, "reserve_s": 150}
DRY = {"batch": 4, "resolution": 32, "steps": 1, "warmup": 0, "conv_batch": 2, "conv_repeats": 1,
       "pipeline_images": 8, "pipeline_image_size": 32, "files": 4, "augment_batch": 4,
       "augment_size": 32, "augment_repeats": 1, "reserve_s": 0}


class Skip(Exception):
    """A row or section that cannot run here, with the reason."""


class Report:
    """Results by section, written to DIR/accelerator_check.json after every section."""

    def __init__(self, out: Path, budget_s: float, info: dict):
        self.out = out
        self.start = time.monotonic()
        self.budget_s = budget_s
        self.data = {"info": info, "sections": {}}

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.start)

    def add(self, section: str, row: dict) -> None:
        self.data["sections"].setdefault(section, []).append(row)
        self.save()

    def save(self) -> None:
        self.data["info"]["elapsed_s"] = round(time.monotonic() - self.start, 1)
        (self.out / "accelerator_check.json").write_text(json.dumps(self.data, indent=2, default=str))


def _guard(report: Report, section: str, name: str, needs_s: float, fn, reserve_s: float = 0.0) -> None:
    """Run `fn() -> dict` as one row, or record why it was skipped or failed; `reserve_s` is
    kept for the sections after this one."""
    if report.left() - reserve_s < needs_s:
        report.add(section, {"name": name, "skipped": f"time budget: {report.left():.0f} s left "
                                                      f"({reserve_s:.0f} s kept for later sections), "
                                                      f"about {needs_s:.0f} s needed"})
        return
    started = time.monotonic()
    try:
        row = {"name": name, **fn()}
    except Skip as why:
        row = {"name": name, "skipped": str(why)}
    except Exception as error:  # one failing row must not lose the others
        row = {"name": name, "failed": f"{type(error).__name__}: {error}",
               "traceback": traceback.format_exc()[-2000:]}
    row["wall_s"] = round(time.monotonic() - started, 1)
    report.add(section, row)


# --- 1. train --------------------------------------------------------------------------------


def _timm_available(dry_run: bool) -> None:
    if importlib.util.find_spec("torch") is None:
        raise Skip("torch is not installed")
    if importlib.util.find_spec("timm") is None:
        raise Skip("timm is not installed")
    import torch

    if not torch.cuda.is_available():
        raise Skip(f"torch {torch.__version__} sees no CUDA device" + (" (dry run)" if dry_run else ""))


def train_rows(report: Report, sizes: dict, models, dry_run: bool) -> None:
    from flaxnets.train.benchmark import benchmark_model

    # The other sections take about 2.5 minutes at full size; the train rows (compiles of a
    # minute each) must leave them that.
    reserve = sizes["reserve_s"]

    common = dict(batch=sizes["batch"], resolution=sizes["resolution"], mode="train", dtype="bfloat16",
                  steps=sizes["steps"], warmup=sizes["warmup"])
    keep = ("images_per_second", "step_time_s", "compile_time_s", "recipe", "batch", "resolution",
            "dtype", "conv_impl", "peak_memory_bytes", "device_kind")

    def timm_row(model):
        def run():
            _timm_available(dry_run)
            import bench_model_timm_gpu as timm_bench

            timm_bench.MODELS.update(TIMM_MODELS)
            result = timm_bench.timm_train_benchmark(model, batch=sizes["batch"],
                                                     resolution=sizes["resolution"] or 224,
                                                     steps=sizes["steps"], warmup=sizes["warmup"])
            return {"framework": "timm", "model": model, "timm_model": TIMM_MODELS[model][0], **result}
        return run

    # timm first: PyTorch releases its cache before JAX allocates.
    for model in models:
        _guard(report, "train", f"timm {model}", 60, timm_row(model), reserve)
    for model in models:
        def ours(model=model):
            result = benchmark_model(model, **common)
            return {"framework": "flaxnets", "model": model, **{k: result[k] for k in keep}}
        _guard(report, "train", f"flaxnets {model}", 45, ours, reserve)

    def ours_device_augment():
        result = benchmark_model(models[0], overrides=["data.augment_on=device"], **common)
        return {"framework": "flaxnets", "model": models[0], "augment_on": "device",
                **{k: result[k] for k in keep}}
    _guard(report, "train", f"flaxnets {models[0]} + device augmentation", 45, ours_device_augment, reserve)


# --- 2. depthwise ----------------------------------------------------------------------------


def depthwise_rows(report: Report, sizes: dict, dry_run: bool) -> None:
    import jax
    import jax.numpy as jnp

    from flaxnets.models.layers import depthwise_shifts

    shapes = DEPTHWISE[:2] if dry_run else DEPTHWISE
    scale = 8 if dry_run else 1

    def lax_conv(x, kernel, strides):
        return jax.lax.conv_general_dilated(x, kernel, strides, "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                            feature_group_count=x.shape[-1])

    def unrolled(x, kernel, strides):
        return depthwise_shifts(x, kernel, strides, "SAME")

    def seconds(fn, *operands):
        start = time.perf_counter()
        jax.block_until_ready(fn(*operands))
        compile_s = time.perf_counter() - start
        times = []
        for _ in range(sizes["conv_repeats"]):
            start = time.perf_counter()
            jax.block_until_ready(fn(*operands))
            times.append(time.perf_counter() - start)
        return statistics.median(times), compile_s

    for size, channels, k, stride in shapes:
        size = max(size // scale, 4)
        for dtype in ("bfloat16", "float32"):
            def run(size=size, channels=channels, k=k, stride=stride, dtype=dtype):
                key_x, key_w = jax.random.split(jax.random.key(0))
                x = jax.random.normal(key_x, (sizes["conv_batch"], size, size, channels), dtype)
                w = jax.random.normal(key_w, (k, k, 1, channels), dtype)
                row = {"shape": [sizes["conv_batch"], size, size, channels], "kernel": k, "stride": stride,
                       "dtype": dtype, "backend": jax.default_backend()}
                outputs = {}
                for name, fn in (("lax", lax_conv), ("unrolled", unrolled)):
                    grad = jax.jit(jax.value_and_grad(
                        lambda x, w, fn=fn: jnp.sum(fn(x, w, (stride, stride)).astype(jnp.float32) ** 2),
                        argnums=(0, 1)))
                    row[f"{name}_forward_backward_ms"], compile_s = seconds(grad, x, w)
                    row[f"{name}_forward_backward_ms"] *= 1e3
                    row[f"{name}_compile_s"] = compile_s
                    outputs[name] = jax.jit(lambda x, w, fn=fn: fn(x, w, (stride, stride)))(x, w)
                diff = jnp.abs(outputs["lax"].astype(jnp.float32) - outputs["unrolled"].astype(jnp.float32))
                row["max_abs_difference"] = float(diff.max())
                row["lax_over_unrolled"] = row["lax_forward_backward_ms"] / row["unrolled_forward_backward_ms"]
                return row
            _guard(report, "depthwise", f"{size}x{size}x{channels} k{k} s{stride} {dtype}", 15, run)


# --- 4. pipeline -----------------------------------------------------------------------------


def _class_folders(root: Path, files: int) -> Path:
    """A train/ folder of two classes of JPEGs made from scikit-image's sample photos."""
    from bench_augment import make_jpegs

    for label in ("a", "b"):
        (root / "train" / label).mkdir(parents=True)
    made = make_jpegs(root, files)
    for i, path in enumerate(made):
        Path(path).rename(root / "train" / ("a" if i % 2 else "b") / Path(path).name)
    return root


def _process_rate(args) -> float:
    """Images/s of one process running the loader's per-example function (no Grain)."""
    folder, count, size, augment_on, seed = args
    import numpy as np

    from flaxnets.data.benchmark import make_augment
    from flaxnets.data.loader import train_example
    from flaxnets.data.sources import open_source

    source = open_source(folder, "train")
    augment = make_augment("randaugment", augment_on)
    rng = np.random.default_rng(seed)
    blobs = [source[i][0] for i in range(len(source))]
    train_example(blobs[0], rng, image_size=size, augment=augment)
    start = time.perf_counter()
    for i in range(count):
        train_example(blobs[i % len(blobs)], rng, image_size=size, augment=augment)
    return count / (time.perf_counter() - start)


def pipeline_rows(report: Report, sizes: dict, dry_run: bool, tmp: Path) -> None:
    folder = _class_folders(tmp / "photos", sizes["files"])
    cores = os.cpu_count() or 1
    # 1 and all cores first, so a short budget still gets the ends of the curve.
    between = sorted({n for n in (2, 4, 8, 16, 32, 64, 128) if n < cores})
    counts = [1] + ([cores] if cores > 1 else []) + between
    if dry_run:
        counts = counts[:2]
    grain = importlib.util.find_spec("grain") is not None
    for n in counts:
        for augment_on in ("host", "device"):
            def run(n=n, augment_on=augment_on):
                images = sizes["pipeline_images"] * n
                if grain:
                    from flaxnets.data.benchmark import make_augment, measure

                    batch = 32 if not dry_run else 4
                    result = measure(folder, workers=n, batches=max(images // batch, 2), batch_size=batch,
                                     image_size=sizes["pipeline_image_size"],
                                     augment=make_augment("randaugment", augment_on))
                    rate, how = result["images_per_second"], f"Grain, {n} worker processes"
                else:
                    with multiprocessing.get_context("spawn").Pool(n) as pool:
                        rates = pool.map(_process_rate, [(str(folder), sizes["pipeline_images"],
                                                          sizes["pipeline_image_size"], augment_on, s)
                                                         for s in range(n)])
                    rate = sum(rates)
                    how = f"{n} processes without Grain (not installed), each the loader's per-example function"
                return {"cores": n, "augment_on": augment_on, "policy": "randaugment(2, 15)",
                        "images_per_second": rate, "images_per_second_per_core": rate / n, "how": how}
            _guard(report, "pipeline", f"{n} cores, augment on the {augment_on}", 20, run)


# --- 3. augment ------------------------------------------------------------------------------


def augment_rows(report: Report, sizes: dict) -> None:
    from bench_augment_device import device_cost

    for policy in ("randaugment", "autoaugment"):
        _guard(report, "augment", f"{policy} on the device", 30, lambda policy=policy: device_cost(
            policy=policy, batch=sizes["augment_batch"], size=sizes["augment_size"],
            repeats=sizes["augment_repeats"]))


# --- the table -------------------------------------------------------------------------------


def _fmt(value, spec: str = ".1f") -> str:
    if value is None:
        return "n/a"
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def markdown(data: dict) -> str:
    info = data["info"]
    lines = [f"# accelerator check: {info['device']}", "",
             f"{info['date']}; jax {info['jax']} ({info['backend']}, {info['device_count']} device(s)); "
             f"host {info['host']}; {'DRY RUN (tiny sizes, figures meaningless)' if info['dry_run'] else ''}",
             ""]
    sections = data["sections"]

    def skipped(row):
        return row.get("skipped") or row.get("failed")

    if "train" in sections:
        lines += ["## Train step, bfloat16", "", "| row | images/s | step ms | compile s | note |",
                  "|---|---:|---:|---:|---|"]
        for r in sections["train"]:
            lines.append(f"| {r['name']} | {_fmt(r.get('images_per_second'), '.0f')} | "
                         f"{_fmt(r.get('step_time_s') and 1e3 * r['step_time_s'])} | "
                         f"{_fmt(r.get('compile_time_s'))} | {skipped(r) or r.get('recipe') or r.get('timm_model', '')} |")
        lines.append("")
    if "depthwise" in sections:
        lines += ["## Depthwise convolution, forward + backward", "",
                  "| layer | lax ms | unrolled ms | lax / unrolled | max abs diff | note |",
                  "|---|---:|---:|---:|---:|---|"]
        for r in sections["depthwise"]:
            lines.append(f"| {r['name']} | {_fmt(r.get('lax_forward_backward_ms'), '.2f')} | "
                         f"{_fmt(r.get('unrolled_forward_backward_ms'), '.2f')} | "
                         f"{_fmt(r.get('lax_over_unrolled'), '.2f')} | {_fmt(r.get('max_abs_difference'), '.3g')} | "
                         f"{skipped(r) or ''} |")
        lines.append("")
    if "pipeline" in sections:
        lines += ["## Input pipeline, RandAugment(2, 15)", "",
                  "| cores | augment on | images/s | per core | how |", "|---:|---|---:|---:|---|"]
        for r in sections["pipeline"]:
            lines.append(f"| {r.get('cores', '')} | {r.get('augment_on', '')} | "
                         f"{_fmt(r.get('images_per_second'), '.0f')} | "
                         f"{_fmt(r.get('images_per_second_per_core'), '.0f')} | {skipped(r) or r.get('how')} |")
        lines.append("")
    if "augment" in sections:
        lines += ["## Device augmentation", "",
                  "| policy | batch x px | ms per batch | compile s | pixels differing from the host | note |",
                  "|---|---|---:|---:|---|---|"]
        for r in sections["augment"]:
            differ = (f"{r['pixels_differing']} of {r['pixels']} (max {r['max_difference']})"
                      if "pixels" in r else "n/a")
            lines.append(f"| {r['name']} | {r.get('batch', '')} x {r.get('image_size', '')} | "
                         f"{_fmt(r.get('seconds_per_batch') and 1e3 * r['seconds_per_batch'])} | "
                         f"{_fmt(r.get('compile_s'))} | {differ} | {skipped(r) or ''} |")
        lines.append("")
    lines.append(f"Total {info.get('elapsed_s', 0):.0f} s.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="every section on tiny sizes on any backend (the CPU too): checks the script")
    parser.add_argument("--out", default="accelerator_check", help="folder for the JSON and Markdown")
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="stop starting rows after this many seconds (default 450)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--sections", nargs="+", default=["train", "depthwise", "pipeline", "augment"],
                        choices=["train", "depthwise", "pipeline", "augment"])
    args = parser.parse_args(argv)

    import jax

    backend = jax.default_backend()
    if backend not in ("gpu", "tpu") and not args.dry_run:
        print(f"accelerator_check: no accelerator: JAX's backend is {backend!r} (expected gpu or tpu); "
              "nothing measured (--dry-run checks the script on the CPU)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = DRY if args.dry_run else FULL
    device = jax.devices()[0]
    info = {"device": f"{jax.device_count()} x {device.device_kind}", "backend": backend,
            "device_count": jax.device_count(), "jax": jax.__version__, "dry_run": args.dry_run,
            "host": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "sizes": sizes}
    report = Report(out, args.budget_s, info)
    with tempfile.TemporaryDirectory() as tmp:
        if "train" in args.sections:
            train_rows(report, sizes, args.models, args.dry_run)
        if "depthwise" in args.sections:
            depthwise_rows(report, sizes, args.dry_run)
        if "augment" in args.sections:
            augment_rows(report, sizes)
        if "pipeline" in args.sections:
            pipeline_rows(report, sizes, args.dry_run, Path(tmp))
    report.save()
    table = markdown(report.data)
    (out / "accelerator_check.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

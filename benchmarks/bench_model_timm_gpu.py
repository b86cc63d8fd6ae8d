"""Train throughput on one GPU: timm on PyTorch vs ours in bfloat16, in the same run.

timm side: `timm.create_model(..., pretrained=False)`, channels_last, `torch.compile`, autocast
bfloat16, SGD with momentum 0.9, cross-entropy; compile time is the first step's time, then
`warmup` untimed steps and `steps` timed steps closed by `torch.cuda.synchronize()`.
Our side: `flaxnets.train.benchmark.benchmark_model(mode="train", dtype="bfloat16")` (jitted
pure step, compiled before timing, `block_until_ready` at the end). Same batch, resolution,
random data, dropout 0.2 and (EfficientNet) stochastic depth 0.2 on both.

PyTorch runs first and releases its cache before JAX starts; JAX preallocation is switched off
so the two never hold the GPU's memory at the same time.

This needs a CUDA GPU, a CUDA build of PyTorch, timm (and torchvision, which timm imports) and
JAX with CUDA: none of them is a flaxnets dependency.

Usage:
    PYTHONPATH=src python benchmarks/bench_model_timm_gpu.py --batch 256 --steps 50
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

# ours -> (timm name, timm keyword arguments matching our defaults)
MODELS = {
    "mobilenet_v3_large": ("mobilenetv3_large_100", {"drop_rate": 0.2}),
    "efficientnet_b0": ("efficientnet_b0", {"drop_rate": 0.2, "drop_path_rate": 0.2}),
}


class SetupError(Exception):
    """What this machine lacks to run the comparison."""


def check_environment():
    """Imports torch/timm and checks both frameworks see a GPU; raises SetupError otherwise."""
    try:
        import torch
    except ImportError:
        raise SetupError("PyTorch is not installed (needs a CUDA build of torch)") from None
    if not torch.cuda.is_available():
        raise SetupError(f"torch {torch.__version__} sees no CUDA GPU; run this on a GPU machine")
    try:
        import timm  # noqa: F401
    except ImportError as e:
        raise SetupError(f"timm cannot be imported ({e}); install timm and torchvision") from None
    import jax

    if jax.default_backend() != "gpu":
        raise SetupError(f"JAX backend is {jax.default_backend()!r}, not 'gpu'; install jax[cuda12]")


def timm_train_benchmark(name, *, batch, resolution, steps, warmup, compile_model=True):
    """Images/s of a timm model's AMP-bf16 channels_last train step."""
    import timm
    import torch

    timm_name, kwargs = MODELS[name]
    torch.manual_seed(0)
    device = torch.device("cuda")
    model = timm.create_model(timm_name, pretrained=False, num_classes=1000, **kwargs)
    model = model.to(device).to(memory_format=torch.channels_last).train()
    parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    step_model = torch.compile(model) if compile_model else model
    images = torch.randn(batch, 3, resolution, resolution, device=device).contiguous(
        memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch,), device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = step_model(images)
        loss = loss_fn(logits.float(), labels)
        loss.backward()
        optimizer.step()
        return loss

    start = time.perf_counter()
    step()
    torch.cuda.synchronize()
    compile_time = time.perf_counter() - start
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    result = {"images_per_second": batch * steps / elapsed, "step_time_s": elapsed / steps,
              "compile_time_s": compile_time, "parameters": parameters,
              "peak_memory_bytes": torch.cuda.max_memory_allocated(),
              "torch": torch.__version__, "timm": timm.__version__,
              "device": torch.cuda.get_device_name()}
    del model, step_model, optimizer, images, labels
    torch.cuda.empty_cache()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--no-torch-compile", action="store_true", help="eager PyTorch (no torch.compile)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        check_environment()
    except SetupError as e:
        print(f"bench_model_timm_gpu: cannot run: {e}", file=sys.stderr)
        return 2

    import jax

    from flaxnets.train.benchmark import benchmark_model

    rows = []
    for name in args.models:
        theirs = timm_train_benchmark(name, batch=args.batch, resolution=args.resolution,
                                      steps=args.steps, warmup=args.warmup,
                                      compile_model=not args.no_torch_compile)
        ours = benchmark_model(name, batch=args.batch, resolution=args.resolution, mode="train",
                               dtype="bfloat16", steps=args.steps, warmup=args.warmup)
        rows.append({"model": name, "timm_model": MODELS[name][0], "batch": args.batch,
                     "resolution": args.resolution, "ours": ours, "timm": theirs,
                     "ratio": ours["images_per_second"] / theirs["images_per_second"]})
    info = {"device": rows[0]["timm"]["device"] if rows else None,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "jax": jax.__version__, "jax_devices": jax.device_count(),
            "torch": rows[0]["timm"]["torch"] if rows else None,
            "timm": rows[0]["timm"]["timm"] if rows else None,
            "torch_compile": not args.no_torch_compile}
    if args.json:
        print(json.dumps({"machine": info, "results": rows}, indent=2, default=str))
        return 0
    print(f"train throughput, bfloat16, batch {args.batch}, {args.resolution}px, {args.steps} timed "
          f"steps after {args.warmup} warmup; {info['device']}; {info['date']}")
    print(f"jax {info['jax']} ({info['jax_devices']} device) vs torch {info['torch']} + timm "
          f"{info['timm']} (AMP bf16, channels_last, torch.compile={info['torch_compile']})")
    header = f"{'model':<20} {'ours img/s':>11} {'timm img/s':>11} {'ours/timm':>10} {'compile s ours/timm':>20}"
    print(header)
    print("-" * len(header))
    for r in rows:
        compile_s = f"{r['ours']['compile_time_s']:.0f}/{r['timm']['compile_time_s']:.0f}"
        print(f"{r['model']:<20} {r['ours']['images_per_second']:>11.0f} "
              f"{r['timm']['images_per_second']:>11.0f} {r['ratio']:>9.2f}x {compile_s:>20}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

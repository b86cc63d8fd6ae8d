"""Model throughput: a jitted train or inference step on random data, timed on every device
JAX sees, the batch sharded over a one-axis 'data' mesh.

The train step is the trainer's own (`flaxnets.train.from_config.train_step_from_config`): a
recipe's optimizer, schedule, weight decay, EMA, label smoothing, Mixup/CutMix, gradient
accumulation, BatchNorm grouping and precision, exactly as `flaxnets train` runs them, on uint8
images normalised on the device. The inference step is the eval-mode forward pass. Compilation
is timed separately from the steps.
"""

from __future__ import annotations

import json
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from flaxnets.config import apply_overrides
from flaxnets.data.augment import DeviceDraws, augment_from_config
from flaxnets.errors import UsageError
from flaxnets.models import create_model, param_kinds
from flaxnets.models.layers import conv_unrolled
from flaxnets.models.registry import model_input
from flaxnets.recipes import list_recipes, load_recipe, recipe_info
from flaxnets.text import plural
from flaxnets.train import parallel
from flaxnets.train.from_config import create_model_from_config, resolve_preprocessing, train_step_from_config
from flaxnets.train.optim import build_optimizer
from flaxnets.train.schedules import build_schedule
from flaxnets.train.state import create_train_state

MODES = ("train", "infer")
DTYPES = ("bfloat16", "float32")


def _device_peak_memory(devices) -> tuple[int | None, str]:
    """The largest per-device peak allocation, or None where the backend reports none."""
    peaks = []
    for d in devices:
        try:
            stats = d.memory_stats()
        except Exception:  # some backends raise instead of returning None
            stats = None
        if stats and "peak_bytes_in_use" in stats:
            peaks.append(int(stats["peak_bytes_in_use"]))
    if len(peaks) == len(devices) and peaks:
        return max(peaks), "largest per-device peak_bytes_in_use since process start"
    return None, f"the {devices[0].platform} backend does not report device memory statistics"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: Preferred recipe families, in order, when a model has several bundled recipes.
_REFERENCE_SUFFIXES = ("_tfvision", "_tpu", "_paper")


def reference_recipe(model: str) -> str:
    """The bundled recipe `flaxnets benchmark model` trains `model` with by default: the one
    named after it (TF-Vision, then TF-TPU, then the paper's); a UsageError when none is."""
    for suffix in _REFERENCE_SUFFIXES:
        if model + suffix in list_recipes():
            return model + suffix
    trained = sorted({recipe_info(r)["model"] for r in list_recipes()})
    raise UsageError(f"no bundled recipe trains {model}; give --recipe NAME (its settings are used with "
                     f"{model}); models with one: {', '.join(trained)}")


def _train_config(name: str, recipe: str | None, batch: int, dtype: str | None, num_classes: int,
                  overrides, device_count: int = 1) -> tuple:
    """(recipe name, validated Config): the recipe with the benchmark's model, batch, classes,
    precision (None: the recipe's) and `overrides` (KEY=VALUE) applied.

    A recipe's per-replica BatchNorm group (e.g. 128 examples) that does not divide a smaller
    benchmark batch becomes this machine's replica, batch / device_count examples, as the
    reference computes BatchNorm per replica; `--set model.bn_group_size=...` chooses otherwise."""
    recipe = recipe or reference_recipe(name)
    # The benchmark times the recipe's step as configured (nothing adapts it to data), so a
    # BatchNorm group larger than the batch is the one-line error it is in `Config.validate`.
    settings = [f"model.name={name}", f"model.num_classes={num_classes}", f"train.global_batch_size={batch}",
                "train.adapt_to_data=false"]
    if dtype is not None:
        settings.append(f"model.dtype={dtype}")
    config = load_recipe(recipe)
    group = config.model.bn_group_size
    micro = batch // config.train.grad_accum_steps
    if group is not None and micro % group and not any(o.startswith("model.bn_group_size=") for o in overrides):
        settings.append(f"model.bn_group_size={max(micro // device_count, 1)}")
    return recipe, apply_overrides(config, settings + list(overrides)).validate()


def benchmark_model(name: str, *, batch: int = 32, resolution: int | None = None,
                    mode: str = "train", dtype: str | None = None, steps: int = 10,
                    warmup: int = 2, num_classes: int = 1000, seed: int = 0,
                    recipe: str | None = None, overrides=()) -> dict:
    """Times `steps` train or inference steps of model `name` on random data.

    Train: the trainer's step for `recipe` (default: `reference_recipe(name)`) with `overrides`
    (KEY=VALUE, as `flaxnets train --set`); `dtype` None takes the recipe's precision.
    Inference: the eval-mode forward pass in `dtype` (None: bfloat16).
    Returns a dict with images_per_second, step_time_s, compile_time_s (lowering plus XLA
    compilation, excluded from the timed steps), parameters (trainable count),
    peak_memory_bytes (None where the backend keeps no device memory statistics, e.g. CPU;
    peak_memory_note says which), devices, device_kind, backend, recipe and the settings used.
    `resolution=None` takes the model's default.
    """
    if mode not in MODES:
        raise UsageError(f"--mode {mode!r}: expected one of {', '.join(MODES)}")
    if dtype is not None and dtype not in DTYPES:
        raise UsageError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    if steps < 1 or warmup < 0:
        raise UsageError(f"--steps {steps}: expected at least 1 timed step (warmup {warmup} >= 0)")
    devices = jax.devices()
    if batch < 1 or batch % len(devices):
        raise UsageError(f"--batch {batch}: expected a positive multiple of the device count "
                         f"{len(devices)} (the batch is sharded over them)")

    _, default_resolution = model_input(name, resolution)
    mesh = parallel.make_mesh(devices)

    if mode == "train":
        recipe, config = _train_config(name, recipe, batch, dtype, num_classes, overrides, len(devices))
        dtype = config.model.dtype
        parallel.check_batch_size(batch, len(devices), config.train.grad_accum_steps)
        model = create_model_from_config(config)
        num_parameters = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
        # The schedule's length does not change the step's cost; a recipe that leaves the
        # training-set size to the data gets 100 steps per epoch.
        num_train = config.data.num_train_examples or 100 * batch
        schedule = build_schedule(config, num_train)
        tx = build_optimizer(config, param_kinds(model), num_train, schedule)
        graphdef, state = create_train_state(
            model, tx, seed=config.seed, ema=config.ema.decay is not None,
            ema_batch_stats=config.ema.include_batch_stats)
        del model
        state = parallel.replicate(jax.device_get(state), mesh)
        prep = resolve_preprocessing(config)
        train_step = train_step_from_config(config, graphdef, tx, schedule=schedule, mean=prep["mean"],
                                            std=prep["std"], mesh=mesh)
        resolution = resolution or prep["image_size"]
        rng = np.random.default_rng(seed)
        host_batch = {"image": rng.integers(0, 256, (batch, resolution, resolution, 3), dtype=np.uint8),
                      "label": rng.integers(0, num_classes, (batch,), dtype=np.int32)}
        draws = augment_from_config(config.data, mean=prep["mean"], std=prep["std"])
        if isinstance(draws, DeviceDraws):  # data.augment_on=device: the step applies them
            host_batch.update(draws.draw_batch(batch, resolution, resolution, seed))
        batch_data = parallel.shard_batch(host_batch, mesh)
        start = time.perf_counter()
        compiled = train_step.lower(state, batch_data).compile()
        compile_time = time.perf_counter() - start

        def run_steps(state, first, n):
            for _ in range(n):
                state, metrics = compiled(state, batch_data)
            jax.block_until_ready((state, metrics))
            return state
    else:
        recipe = None
        resolution = default_resolution
        dtype = dtype or "bfloat16"
        replicated = NamedSharding(mesh, P())
        sharded = NamedSharding(mesh, P(parallel.DATA_AXIS))
        model = create_model(name, num_classes=num_classes, rngs=nnx.Rngs(seed), dtype=dtype)
        model.eval()
        # Eval mode lives in the graph definition; parameters and statistics are the state.
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        num_parameters = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
        state = jax.device_put((params, rest), replicated)
        images = jax.device_put(
            jax.random.normal(jax.random.key(seed), (batch, resolution, resolution, 3), jnp.float32), sharded)

        def infer_step(params, rest, images):
            return nnx.merge(graphdef, params, rest)(images)

        jitted = jax.jit(infer_step, out_shardings=sharded)
        start = time.perf_counter()
        compiled = jitted.lower(*state, images).compile()
        compile_time = time.perf_counter() - start

        def run_steps(state, first, n):
            for _ in range(n):
                logits = compiled(*state, images)
            jax.block_until_ready(logits)
            return state

    if warmup:
        state = run_steps(state, 0, warmup)
    start = time.perf_counter()
    state = run_steps(state, warmup, steps)
    elapsed = time.perf_counter() - start
    peak, peak_note = _device_peak_memory(devices)
    return {
        "model": name,
        "mode": mode,
        "recipe": recipe,
        "dtype": dtype,
        "batch": batch,
        "resolution": resolution,
        "steps": steps,
        "warmup": warmup,
        "parameters": num_parameters,
        "images_per_second": batch * steps / elapsed,
        "step_time_s": elapsed / steps,
        "compile_time_s": compile_time,
        "peak_memory_bytes": peak,
        "peak_memory_note": peak_note,
        "devices": len(devices),
        "device_kind": devices[0].device_kind,
        "backend": jax.default_backend(),
        # How depthwise / 1x1 convolutions were computed (flaxnets.models.layers.conv_unrolled).
        "conv_impl": "unrolled" if conv_unrolled() else "lax",
        "cpu": _cpu_name(),
        "jax_version": jax.__version__,
    }


def _format(result: dict) -> str:
    peak = result["peak_memory_bytes"]
    rows = [
        ("model", result["model"]),
        ("mode / dtype", f"{result['mode']} / {result['dtype']}"),
        ("train step", f"recipe {result['recipe']}" if result["recipe"] else "n/a (inference)"),
        ("batch x resolution", f"{result['batch']} x {result['resolution']}px"),
        ("devices", f"{result['devices']} x {result['device_kind']} ({result['backend']})"),
        ("convolutions", result["conv_impl"]),
        ("images/s", f"{result['images_per_second']:,.1f}"),
        ("step time", f"{1000 * result['step_time_s']:.1f} ms "
                      f"(mean of {plural(result['steps'], 'step')} after {result['warmup']} warmup)"),
        ("compile time", f"{result['compile_time_s']:.1f} s"),
        ("peak memory", f"{peak / 2**20:,.0f} MiB" if peak is not None
         else f"n/a ({result['peak_memory_note']})"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def run(args) -> int:
    """Entry point of `flaxnets benchmark model`: prints a table, or JSON with --json."""
    result = benchmark_model(
        args.name,
        batch=args.batch,
        resolution=getattr(args, "resolution", None),
        mode=getattr(args, "mode", "train"),
        dtype=getattr(args, "dtype", None),
        steps=getattr(args, "steps", 10),
        warmup=getattr(args, "warmup", 2),
        recipe=getattr(args, "recipe", None),
        overrides=getattr(args, "overrides", ()),
    )
    print(json.dumps(result, indent=2) if getattr(args, "json", False) else _format(result))
    return 0

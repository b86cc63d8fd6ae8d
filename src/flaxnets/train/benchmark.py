"""Model throughput: a jitted train or inference step on random data, timed on every device
JAX sees, the batch sharded over a one-axis 'data' mesh.

The train step is a complete step of the kind the trainer runs (forward in train mode,
softmax cross-entropy on float32 logits, backward, an Optax SGD-with-momentum update, BatchNorm
statistics update), written here as a pure `jax.jit` function so that it stands alone; the
inference step is the eval-mode forward pass. Compilation is timed separately from the steps.
"""

from __future__ import annotations

import json
import platform
import time

from flaxnets.errors import UsageError

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


def benchmark_model(name: str, *, batch: int = 32, resolution: int | None = None,
                    mode: str = "train", dtype: str = "bfloat16", steps: int = 10,
                    warmup: int = 2, num_classes: int = 1000, seed: int = 0) -> dict:
    """Times `steps` train or inference steps of model `name` on random data.

    Returns a dict with images_per_second, step_time_s, compile_time_s (lowering plus XLA
    compilation, excluded from the timed steps), parameters (trainable count),
    peak_memory_bytes (None where the backend keeps no device memory statistics, e.g. CPU;
    peak_memory_note says which), devices, device_kind, backend and the settings used.
    `resolution=None` takes the model's default.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    if mode not in MODES:
        raise UsageError(f"--mode {mode!r}: expected one of {', '.join(MODES)}")
    if dtype not in DTYPES:
        raise UsageError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    if steps < 1 or warmup < 0:
        raise UsageError(f"--steps {steps}: expected at least 1 timed step (warmup {warmup} >= 0)")
    devices = jax.devices()
    if batch < 1 or batch % len(devices):
        raise UsageError(f"--batch {batch}: expected a positive multiple of the device count "
                         f"{len(devices)} (the batch is sharded over them)")

    from flaxnets.models import create_model
    from flaxnets.models.layers import conv_unrolled
    from flaxnets.models.registry import model_input

    _, resolution = model_input(name, resolution)

    mesh = Mesh(np.asarray(devices), ("data",))
    replicated = NamedSharding(mesh, P())
    sharded = NamedSharding(mesh, P("data"))

    model = create_model(name, num_classes=num_classes, rngs=nnx.Rngs(seed), dtype=dtype)
    if mode == "train":
        model.train()
    else:
        model.eval()
    # Train/eval mode lives in the graph definition; parameters and statistics are the state.
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    num_parameters = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    params, rest = jax.device_put((params, rest), replicated)

    data_key, label_key = jax.random.split(jax.random.key(seed))
    images = jax.device_put(
        jax.random.normal(data_key, (batch, resolution, resolution, 3), jnp.float32), sharded)
    labels = jax.device_put(jax.random.randint(label_key, (batch,), 0, num_classes), sharded)

    if mode == "train":
        tx = optax.sgd(0.01, momentum=0.9)
        opt_state = jax.device_put(tx.init(params), replicated)
        dropout_key = jax.random.key(seed + 1)

        def train_step(params, rest, opt_state, images, labels, step):
            model = nnx.merge(graphdef, params, rest)

            def loss_fn(model):
                logits = model(images, rngs=nnx.Rngs(dropout=jax.random.fold_in(dropout_key, step)))
                return optax.softmax_cross_entropy_with_integer_labels(
                    logits.astype(jnp.float32), labels).mean()

            # nnx.value_and_grad (not jax's) so the forward pass may update the BatchNorm
            # statistics held by `model`; gradients are taken for the nnx.Param state.
            loss, grads = nnx.value_and_grad(loss_fn)(model)
            _, params, rest = nnx.split(model, nnx.Param, ...)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), rest, opt_state, loss

        jitted = jax.jit(train_step, donate_argnums=(0, 1, 2),
                         out_shardings=(replicated, replicated, replicated, replicated))
        state = (params, rest, opt_state)
        start = time.perf_counter()
        compiled = jitted.lower(*state, images, labels, jnp.int32(0)).compile()
        compile_time = time.perf_counter() - start

        def run_steps(state, first, n):
            for i in range(first, first + n):
                *state, loss = compiled(*state, images, labels, jnp.int32(i))
            jax.block_until_ready((state, loss))
            return state
    else:
        def infer_step(params, rest, images):
            return nnx.merge(graphdef, params, rest)(images)

        jitted = jax.jit(infer_step, out_shardings=sharded)
        state = (params, rest)
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
        ("batch x resolution", f"{result['batch']} x {result['resolution']}px"),
        ("devices", f"{result['devices']} x {result['device_kind']} ({result['backend']})"),
        ("convolutions", result["conv_impl"]),
        ("images/s", f"{result['images_per_second']:,.1f}"),
        ("step time", f"{1000 * result['step_time_s']:.1f} ms "
                      f"(mean of {result['steps']} steps after {result['warmup']} warmup)"),
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
        dtype=getattr(args, "dtype", "bfloat16"),
        steps=getattr(args, "steps", 10),
        warmup=getattr(args, "warmup", 2),
    )
    print(json.dumps(result, indent=2) if getattr(args, "json", False) else _format(result))
    return 0

"""Our model step vs Keras 3 `keras.applications` on CPU, in the same run.

For each of mobilenet_v3_large, mobilenet_v3_small and efficientnet_b0 this times a train step
and an inference step of ours (`flaxnets.train.benchmark.benchmark_model`) and of the Keras 3
application with `weights=None` on the JAX backend, at equal batch, resolution and precision,
and prints images/s of both and the ratio ours / Keras, with the machine and date.

Both sides are measured the same way: a `jax.jit`-compiled pure step (compiled before timing),
`warmup` untimed steps, then `steps` timed steps ending in `block_until_ready`. Our train step
is the one `flaxnets train` runs for the model's reference recipe (`flaxnets benchmark model`:
mobilenet_v3_*_tfvision, efficientnet_b0_tpu; their optimizer, weight decay, EMA, label
smoothing and BatchNorm grouping, on uint8 images normalised on the device), at the precision
given here. Keras's is forward + softmax cross-entropy on logits + backward + SGD with momentum
0.9 + BatchNorm statistics update, its documented stateless JAX step (`stateless_call` +
`optimizer.stateless_apply` under `jax.jit`), which avoids `train_on_batch`'s per-call Python
overhead; `--keras-step train_on_batch` times that instead. Ours therefore does a little more
work per step (the recipe's optimizer and EMA) than Keras's. Inference is the eval-mode forward
pass (`stateless_call(training=False)` under `jax.jit`).

Keras's EfficientNetB0 always contains its input Rescaling + Normalization layers (two
elementwise ops); its MobileNetV3 is built with `include_preprocessing=False`.

Usage (run it on an otherwise idle machine; a shared one gives noisy figures):
    PYTHONPATH=src python benchmarks/bench_model_keras.py --batch 16 --resolution 224 --steps 5
"""

from __future__ import annotations

import os

# One CPU device for both sides (a fake multi-device setting would split our batch only), and
# Keras on JAX; both must be set before JAX or Keras is imported.
os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = " ".join(
    f for f in os.environ.get("XLA_FLAGS", "").split() if "force_host_platform_device_count" not in f)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

MODELS = {
    "mobilenet_v3_large": ("MobileNetV3Large", {"include_preprocessing": False, "dropout_rate": 0.2}),
    "mobilenet_v3_small": ("MobileNetV3Small", {"include_preprocessing": False, "dropout_rate": 0.2}),
    # Keras's EfficientNetB0 takes no dropout arguments; its defaults (dropout 0.2, drop-connect
    # 0.2) are ours.
    "efficientnet_b0": ("EfficientNetB0", {}),
}


def keras_step_benchmark(name, *, batch, resolution, mode, dtype, steps, warmup, keras_step):
    """Times the Keras 3 application matching our model `name`; same keys as ours."""
    import jax
    import jax.numpy as jnp
    import keras
    import numpy as np

    keras.config.set_dtype_policy("mixed_bfloat16" if dtype == "bfloat16" else "float32")
    keras.utils.set_random_seed(0)
    cls_name, kwargs = MODELS[name]
    model = getattr(keras.applications, cls_name)(
        input_shape=(resolution, resolution, 3), weights=None, classes=1000,
        classifier_activation=None, **kwargs)
    parameters = int(sum(np.prod(v.shape) for v in model.trainable_variables))
    key_x, key_y = jax.random.split(jax.random.key(0))
    images = jax.random.normal(key_x, (batch, resolution, resolution, 3), jnp.float32)
    labels = jax.random.randint(key_y, (batch,), 0, 1000)

    if mode == "train" and keras_step == "train_on_batch":
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=True)
        x, y = np.asarray(images), np.asarray(labels)
        start = time.perf_counter()
        model.train_on_batch(x, y)  # the first call traces and compiles
        compile_time = time.perf_counter() - start

        def run_steps(n):
            for _ in range(n):
                loss = model.train_on_batch(x, y)
            return loss
    elif mode == "train":
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
        optimizer.build(model.trainable_variables)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        def compute_loss(trainable, non_trainable, x, y):
            logits, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
            return loss_fn(y, logits.astype("float32")), non_trainable

        def train_step(state, x, y):
            trainable, non_trainable, opt_vars = state
            (loss, non_trainable), grads = jax.value_and_grad(compute_loss, has_aux=True)(
                trainable, non_trainable, x, y)
            trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
            return (trainable, non_trainable, opt_vars), loss

        state = ([v.value for v in model.trainable_variables],
                 [v.value for v in model.non_trainable_variables],
                 [v.value for v in optimizer.variables])
        jitted = jax.jit(train_step, donate_argnums=0)
        start = time.perf_counter()
        compiled = jitted.lower(state, images, labels).compile()
        compile_time = time.perf_counter() - start
        holder = [state]

        def run_steps(n):
            for _ in range(n):
                holder[0], loss = compiled(holder[0], images, labels)
            return jax.block_until_ready((holder[0], loss))
    else:
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        jitted = jax.jit(lambda t, nt, x: model.stateless_call(t, nt, x, training=False)[0])
        start = time.perf_counter()
        compiled = jitted.lower(trainable, non_trainable, images).compile()
        compile_time = time.perf_counter() - start

        def run_steps(n):
            for _ in range(n):
                logits = compiled(trainable, non_trainable, images)
            return jax.block_until_ready(logits)

    if warmup:
        run_steps(warmup)
    start = time.perf_counter()
    run_steps(steps)
    elapsed = time.perf_counter() - start
    return {"images_per_second": batch * steps / elapsed, "step_time_s": elapsed / steps,
            "compile_time_s": compile_time, "parameters": parameters,
            "keras_step": keras_step if mode == "train" else "stateless_call (jit)"}


def machine() -> dict:
    """CPU model, core count, load and date, printed beside the figures."""
    from flaxnets.train.benchmark import _cpu_name

    import jax
    import keras

    return {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "jax": jax.__version__,
        "keras": keras.__version__,
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--modes", nargs="+", default=["train", "infer"], choices=["train", "infer"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after compilation")
    parser.add_argument("--keras-step", default="stateless", choices=["stateless", "train_on_batch"],
                        help="Keras train step: jitted stateless_call (default) or train_on_batch")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)

    from flaxnets.train.benchmark import benchmark_model

    info = machine()
    rows = []
    for name in args.models:
        for mode in args.modes:
            settings = dict(batch=args.batch, resolution=args.resolution, mode=mode,
                            dtype=args.dtype, steps=args.steps, warmup=args.warmup)
            ours = benchmark_model(name, **settings)
            theirs = keras_step_benchmark(name, keras_step=args.keras_step, **settings)
            rows.append({"model": name, "mode": mode, **{k: v for k, v in settings.items()},
                         "ours": {k: ours[k] for k in ("images_per_second", "step_time_s",
                                                       "compile_time_s", "parameters")},
                         "keras": theirs,
                         "ratio": ours["images_per_second"] / theirs["images_per_second"]})
            # Each figure as soon as it is measured, so a long run that is stopped keeps them.
            print(f"  {name} {mode}: ours {ours['images_per_second']:.1f} img/s, keras "
                  f"{theirs['images_per_second']:.1f} img/s, ratio {rows[-1]['ratio']:.2f}x",
                  file=sys.stderr, flush=True)

    if args.json:
        print(json.dumps({"machine": info, "results": rows}, indent=2))
        return 0
    print(f"flaxnets vs Keras {info['keras']} applications (JAX {info['jax']}, {info['backend']}, "
          f"{info['devices']} device), {args.dtype}, batch {args.batch}, {args.resolution}px, "
          f"{args.steps} timed steps after {args.warmup} warmup")
    print(f"machine: {info['cpu']}, {info['cores']} cores, load average {info['load_average_1min']:.1f}"
          f", {info['date']}")
    print(f"Keras train step: {args.keras_step}")
    header = f"{'model':<20} {'mode':<6} {'ours img/s':>11} {'keras img/s':>12} {'ours/keras':>11} " \
             f"{'params ours/keras':>22}"
    print(header)
    print("-" * len(header))
    for r in rows:
        params = f"{r['ours']['parameters']:,}/{r['keras']['parameters']:,}"
        print(f"{r['model']:<20} {r['mode']:<6} {r['ours']['images_per_second']:>11.1f} "
              f"{r['keras']['images_per_second']:>12.1f} {r['ratio']:>10.2f}x {params:>22}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

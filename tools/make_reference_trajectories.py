"""Write tests/train/goldens/trajectory_*.json: K train steps of the reference trainers.

Run with a Python that has tensorflow-cpu, tf-keras and tf-models-official (a scratch venv; the
test suite never imports TensorFlow or this file), for example:

    TF_USE_LEGACY_KERAS=1 /path/to/tfvenv/bin/python tools/make_reference_trajectories.py \
        --case mobilenet_v3_small_tfvision --replicas 1

The committed goldens: `--replicas 1` and `2` of each case, `--steps 20` for
efficientnet_b0_tpu and `--steps 3` for the MobileNets (docs/REFERENCE_TRAJECTORIES.md: their
float32 trajectories part after a few steps whatever the implementation); past warmup,
`--start-step 100000 --steps 20 --size 32 --batch 128` (MobileNets) or `256` (B0), in float32 and
with `--dtype float64` (`set_up_dtype`).

Cases:
- `mobilenet_v3_small_tfvision`, `mobilenet_v3_large_tfvision`: TF-Vision's own experiment
  (`exp_factory.get_exp_config("mobilenet_imagenet")` overridden by the published yaml,
  official/vision/configs/experiments/image_classification/imagenet_mobilenetv3{small,large}_tpu.yaml
  in tensorflow/models, transcribed below), its `ImageClassificationTask.build_model()`, the
  optimizer from `task.create_optimizer(...)` (OptimizerFactory: schedule, warmup, EMA wrapper)
  with the EMA shadow copy made as orbit's trainer makes it, and `task.train_step` itself.
- `efficientnet_b0_tpu`: see `run_efficientnet`.

What is changed from the published runs, identically on our side: dropout off (its random masks
cannot be matched; MobileNet has no stochastic depth), float32 compute, `--batch` images of
`--size` pixels per step (the schedules keep the published step counts, which do not depend on
the batch), and initial weights drawn by `tests/train/trajectory_inputs.py` from `--seed` in the
order of `model.variables` (our side maps its variables onto that order by traversal and shape).
The batches are that module's `make_batches`, normalised with TF-Vision's
`preprocess_ops.normalize_image` (MEAN_RGB / STDDEV_RGB), as its input parser does.

With `--replicas 2` the step runs under `tf.distribute.MirroredStrategy` over two logical CPU
devices; replica r gets rows [r * batch/2, (r + 1) * batch/2) and its own BatchNorm moments
(`use_sync_bn: false`, as the yamls run).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "train"))

import numpy as np  # noqa: E402

import trajectory_inputs as ti  # noqa: E402

OUT = ROOT / "tests" / "train" / "goldens"

# The yamls' training-relevant keys (data paths, runtime and trainer intervals left out).
MNV3_SMALL_YAML = {
    "task": {
        "model": {
            "num_classes": 1001, "input_size": [224, 224, 3],
            "backbone": {"type": "mobilenet", "mobilenet": {"model_id": "MobileNetV3Small",
                                                            "filter_size_scale": 1.0}},
            "norm_activation": {"activation": "relu", "norm_momentum": 0.997, "norm_epsilon": 0.001,
                                "use_sync_bn": False},
            "dropout_rate": 0.2,
        },
        "losses": {"l2_weight_decay": 0.00001, "one_hot": True, "label_smoothing": 0.1},
        "train_data": {"global_batch_size": 4096},
    },
    "trainer": {
        "train_steps": 312000,
        "optimizer_config": {
            "optimizer": {"type": "rmsprop", "rmsprop": {"rho": 0.9, "momentum": 0.9, "epsilon": 0.002}},
            "learning_rate": {"type": "exponential", "exponential": {
                "initial_learning_rate": 0.01, "decay_steps": 936, "decay_rate": 0.99, "staircase": True}},
            "ema": {"average_decay": 0.9999, "trainable_weights_only": False},
            "warmup": {"type": "linear", "linear": {"warmup_steps": 1560, "warmup_learning_rate": 0.001}},
        },
    },
}

MNV3_LARGE_YAML = {
    "task": {
        "model": {
            "num_classes": 1001, "input_size": [224, 224, 3],
            "backbone": {"type": "mobilenet", "mobilenet": {"model_id": "MobileNetV3Large",
                                                            "filter_size_scale": 1.0}},
            "kernel_initializer": "random_uniform",
            "norm_activation": {"norm_epsilon": 0.001, "norm_momentum": 0.997},
            "dropout_rate": 0.2,
        },
        "losses": {"l2_weight_decay": 0.0, "one_hot": True, "label_smoothing": 0.1},
        "train_data": {"global_batch_size": 4096},
    },
    "trainer": {
        "train_steps": 218000,
        "optimizer_config": {
            "learning_rate": {"type": "cosine", "cosine": {
                "alpha": 0.0, "decay_steps": 218000, "initial_learning_rate": 0.004, "name": "CosineDecay",
                "offset": 0}},
            "optimizer": {"type": "adamw", "adamw": {
                "amsgrad": False, "beta_1": 0.9, "beta_2": 0.999, "clipnorm": None, "clipvalue": None,
                "epsilon": 1.0e-07, "exclude_from_weight_decay": ["batch_normalization"],
                "global_clipnorm": None, "gradient_clip_norm": 0.0, "include_in_weight_decay": None,
                "name": "AdamWeightDecay", "weight_decay_rate": 0.1}},
        },
    },
}

TFVISION_CASES = {
    "mobilenet_v3_small_tfvision": ("imagenet_mobilenetv3small_tpu.yaml", MNV3_SMALL_YAML),
    "mobilenet_v3_large_tfvision": ("imagenet_mobilenetv3large_tpu.yaml", MNV3_LARGE_YAML),
}


def set_up_devices(tf, replicas: int):
    """`replicas` logical CPU devices (before TF initialises its runtime) and a strategy."""
    if replicas == 1:
        return tf.distribute.get_strategy()
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    return tf.distribute.MirroredStrategy([f"/cpu:{r}" for r in range(replicas)])


def per_replica(strategy, array, replicas: int):
    """Replica r's rows of `array` as distributed values (the whole array for one replica)."""
    import tensorflow as tf

    if replicas == 1:
        return tf.constant(array)
    rows = array.shape[0] // replicas
    return strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(array[ctx.replica_id_in_sync_group * rows:(ctx.replica_id_in_sync_group + 1) * rows]))


def assign_drawn(variables, seed: int) -> list[dict]:
    """Assign every variable its `draw_variable` value; returns name, shape and role per index."""
    table = []
    for index, v in enumerate(variables):
        role = ti.role_of(v.name)
        shape = [int(s) for s in v.shape]
        v.assign(ti.draw_variable(seed, index, role, shape))
        table.append({"name": v.name, "shape": shape, "role": role})
    return table


def start_past_warmup(optimizer, model, step: int) -> None:
    """Resume TF-Vision's trainer at optimizer step `step` (`--start-step`): the iteration
    counter, which the schedule, the optimizers' bias corrections and the EMA's dynamic decay
    all read, is set to `step`; with an EMA its averages are set to the model's weights (a run
    resumed at `step` carries an average; TF-Vision's zero start, docs/REFERENCE_TRAJECTORIES.md
    item 1, would otherwise weigh 0.9999**K of it, too close to 1 to subtract). The optimizer's
    slots keep their fresh values, as on our side."""
    optimizer.iterations.assign(step)
    if model is not None:
        for v in model.variables:
            optimizer.get_slot(v, "average").assign(v)


def set_up_dtype(dtype: str) -> None:
    """`--dtype float64`: tf_keras builds every layer's variables and computation in float64
    (`backend.set_floatx`). Its BatchNormalization then cannot be fused (the fused op takes
    float16 / bfloat16 / float32 only; `_raise_if_fused_cannot_be_used`), so it runs unfused and
    moves its moving variance towards the biased batch variance, TF-Vision's included
    (`bn_moving_variance` records what the built layers do). The images are normalised in float32
    as in the float32 runs and then cast to float64, on our side as well. float64 trajectories do
    not part by float32 rounding near the activations' kinks within 20 steps, so the weight decay
    and L2 terms, a small part of each step's motion, are seen (docs/REFERENCE_TRAJECTORIES.md)."""
    if dtype == "float64":
        import tf_keras

        tf_keras.backend.set_floatx("float64")


class Float64Casts:
    """The `tf` that official/vision/tasks/image_classification.py and
    official/modeling/optimization/legacy_adamw.py see under `--dtype float64`:
    `ImageClassificationTask.train_step` casts the logits to float32 (for mixed precision) and
    makes one-hot labels with `tf.one_hot`'s float32 default; both give float64 instead, so that
    the loss and its gradient stay float64. `AdamWeightDecay` makes its weight-decay rate a
    float32 `tf.constant`, which cannot multiply a float64 variable; it is cast to float64 (as
    tf_keras casts the optimizers' float32 hyper-parameter variables, `_get_hyper`). Everything
    else is TensorFlow's own."""

    def __init__(self, tf):
        self._tf = tf

    def __getattr__(self, name):
        return getattr(self._tf, name)

    def cast(self, x, dtype, name=None):
        return self._tf.cast(x, self._tf.float64 if dtype == self._tf.float32 else dtype, name=name)

    def constant(self, value, dtype=None, *args, **kwargs):
        made = self._tf.constant(value, dtype, *args, **kwargs)
        return self._tf.cast(made, self._tf.float64) if dtype is None and made.dtype == self._tf.float32 else made

    def one_hot(self, indices, depth, *args, **kwargs):
        if not args:
            kwargs.setdefault("dtype", self._tf.float64)
        return self._tf.one_hot(indices, depth, *args, **kwargs)


def normalized64(images, mean, std) -> np.ndarray:
    """(images - mean) / std in float64, mean and std per channel on the 0-255 scale: the
    normalisation of a `--dtype float64` run on both sides (flaxnets' `normalize(..., dtype=)`),
    so that float32 rounding of the inputs does not seed a departure."""
    return (images.astype(np.float64) - np.asarray(mean, np.float64)) / np.asarray(std, np.float64)


def moving_variance_of(model) -> str:
    """Which variance the model's BatchNorm layers move their moving variance towards: fused
    (Keras' fused op, Bessel-corrected) -> "unbiased", unfused -> "biased". Layers never built
    (`fused` still None; under MirroredStrategy `model.submodules` also lists such copies) are
    not counted."""
    import tf_keras

    layers = [layer for layer in model.submodules
              if isinstance(layer, tf_keras.layers.BatchNormalization) and layer.fused is not None]
    fused = {bool(layer.fused) for layer in layers}
    if len(fused) != 1:
        kinds = sorted({(type(layer).__name__, layer.fused) for layer in layers}, key=str)
        raise ValueError(f"BatchNorm layers fused {sorted(fused)}: expected all or none ({kinds})")
    return "unbiased" if fused.pop() else "biased"


def summaries(arrays) -> list[dict]:
    return [ti.summarize(np.asarray(a), i) for i, a in enumerate(arrays)]


def run_tfvision(case: str, args) -> dict:
    import tensorflow as tf
    import official
    from official.core import exp_factory
    from official.vision.configs import image_classification as ic_config  # noqa: F401  (registers)
    from official.vision.ops import preprocess_ops
    from official.vision.tasks import image_classification as ic_task

    strategy = set_up_devices(tf, args.replicas)
    yaml_name, yaml = TFVISION_CASES[case]
    params = exp_factory.get_exp_config("mobilenet_imagenet")
    params.override(yaml, is_strict=True)
    params.override({"task": {"model": {"dropout_rate": 0.0, "input_size": [args.size, args.size, 3]},
                              "train_data": {"global_batch_size": args.batch}}}, is_strict=True)
    num_classes = params.task.model.num_classes

    if args.dtype == "float64":
        from official.modeling.optimization import legacy_adamw

        ic_task.tf = legacy_adamw.tf = Float64Casts(tf)
    with strategy.scope():
        task = ic_task.ImageClassificationTask(params.task)
        model = task.build_model()
        table = assign_drawn(model.variables, args.seed)
        optimizer = task.create_optimizer(params.trainer.optimizer_config, params.runtime)
        ema = params.trainer.optimizer_config.ema is not None
        if ema:  # as official/core/base_trainer.py does when the trainer is built
            optimizer.shadow_copy(model)
        if args.start_step:
            start_past_warmup(optimizer, model if ema else None, args.start_step)

    images, labels = ti.make_batches(args.seed, args.steps, args.batch, args.size, num_classes)

    @tf.function
    def step(features, labels_):
        logs = strategy.run(task.train_step, args=((features, labels_), model, optimizer))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, logs[task.loss], axis=None)

    learning_rates, losses, regularization = [], [], []
    schedule = optimizer.learning_rate
    for s in range(args.steps):
        learning_rates.append(float(schedule(optimizer.iterations)))
        # The L2 terms TF-Vision adds to the logged loss, at the weights the step starts from.
        regularization.append(float(tf.add_n(model.losses)) if model.losses else 0.0)
        if args.dtype == "float64":  # normalize_image's arithmetic, in float64 (set_up_dtype)
            features = normalized64(images[s], preprocess_ops.MEAN_RGB, preprocess_ops.STDDEV_RGB)
        else:
            features = preprocess_ops.normalize_image(
                tf.cast(images[s], tf.float32), offset=preprocess_ops.MEAN_RGB,
                scale=preprocess_ops.STDDEV_RGB).numpy()
        losses.append(float(step(per_replica(strategy, features, args.replicas),
                                 per_replica(strategy, labels[s], args.replicas))))
        if args.early_step and s + 1 == args.early_step:
            early = [v.numpy() for v in model.variables]

    result = {
        "reference": f"TF-Vision ImageClassificationTask, experiment mobilenet_imagenet + {yaml_name}",
        "what_ran": ("official.vision.tasks.image_classification.ImageClassificationTask: build_model, "
                     "create_optimizer (OptimizerFactory) and train_step under tf.function"
                     + (f", tf.distribute.MirroredStrategy over {args.replicas} logical CPU devices"
                        if args.replicas > 1 else "")),
        "tf_config": {"optimizer_config": params.trainer.optimizer_config.as_dict(),
                      "losses": params.task.losses.as_dict(),
                      "norm_activation": params.task.model.norm_activation.as_dict()},
        "tf_models_official": getattr(official, "__version__", None) or _dist_version("tf-models-official"),
        # Keras' fused BatchNorm moves its moving variance towards the Bessel-corrected batch
        # variance n / (n - 1) * biased (tf_keras batch_normalization.py, _fused_batch_norm);
        # under --dtype float64 the layers are not fused (set_up_dtype).
        "bn_moving_variance": moving_variance_of(model),
        "num_classes": num_classes,
        "variables": table,
        "learning_rate": learning_rates,
        "total_loss": losses,
        "regularization": regularization,
        "loss": [t - r for t, r in zip(losses, regularization)],
        "_final": [v.numpy() for v in model.variables],
    }
    if args.early_step:
        result["_early"] = early
    result["final"] = summaries(result["_final"])
    if ema:
        result["_final_ema"] = [optimizer.get_slot(v, "average").numpy() for v in model.variables]
        result["final_ema"] = summaries(result["_final_ema"])
    return result


# TF-TPU EfficientNet-B0 flags (models/official/efficientnet/main.py defaults and the B0 row of
# efficientnet_builder.efficientnet_params in tensorflow/tpu).
TPU_B0 = {"base_learning_rate": 0.016, "train_batch_size": 2048, "num_train_images": 1281167,
          "lr_decay_epoch": 2.4, "lr_decay_factor": 0.97, "lr_warmup_epochs": 5, "weight_decay": 1e-5,
          "label_smoothing": 0.1, "moving_average_decay": 0.9999, "rmsprop_decay": 0.9,
          "rmsprop_momentum": 0.9, "rmsprop_epsilon": 1e-3, "batch_norm_momentum": 0.99,
          "batch_norm_epsilon": 1e-3, "num_label_classes": 1000}


def run_efficientnet(args) -> dict:
    """TF-TPU EfficientNet's training composition on a Keras B0.

    main.py's model_fn is TF1 TPUEstimator code (tf.layers, tf.contrib-era TPU ops) that does
    not run under TF 2.21, so its composition is rebuilt with the very classes it uses:
    loss = softmax_cross_entropy(label_smoothing) + weight_decay * sum(l2_loss(v)) over the
    trainable variables that are not BatchNorm's; tf.compat.v1.train.RMSPropOptimizer on
    utils.build_learning_rate (tf.compat.v1.train.exponential_decay, staircase, with the first
    int(5 * steps_per_epoch) steps replaced by lr * step / warmup_steps); the BatchNorm updates
    before the optimizer step; then tf.compat.v1.train.ExponentialMovingAverage(0.9999,
    num_updates=global_step).apply() over the trainable variables and the BatchNorm moving
    statistics (utils.get_ema_vars), its shadows starting at the initial weights as in TF1
    graph mode. The model is tf_keras.applications.EfficientNetB0 (weights=None, no dropout
    or drop-connect) from its stem padding on, so the images enter normalised as main.py's
    normalize_features leaves them; its BatchNorm layers take the B0 flags' momentum and epsilon
    and are not fused, as TpuBatchNormalization is not.
    Replaced: TPUEstimator, CrossShardOptimizer (with several replicas, MirroredStrategy's
    gradient all-reduce of the per-replica mean loss, i.e. the same mean gradient) and the
    TF-TPU model code (the Keras B0 has the same architecture; flaxnets' Keras parity tests
    hold our B0 to it). main.py's `'batch_normalization' not in v.name` filter becomes
    "not a BatchNormalization layer's variable", since Keras names its BatchNorm layers *_bn.
    """
    import tensorflow as tf
    import tf_keras
    from tf_keras.src.applications import efficientnet as keras_efficientnet

    flags = TPU_B0
    strategy = set_up_devices(tf, args.replicas)
    steps_per_epoch = flags["num_train_images"] / flags["train_batch_size"]
    with strategy.scope():
        # EfficientNetB0() fixes dropout at 0.2; the function under it takes the B0 coefficients.
        full = keras_efficientnet.EfficientNet(
            1.0, 1.0, 224, dropout_rate=0.0, drop_connect_rate=0.0, model_name="efficientnetb0", weights=None,
            input_shape=(args.size, args.size, 3), classes=flags["num_label_classes"], classifier_activation=None)
        model = tf_keras.Model(full.get_layer("stem_conv_pad").input, full.output)
        bn_variables = set()
        for layer in model.layers:
            if isinstance(layer, tf_keras.layers.BatchNormalization):
                layer.momentum = flags["batch_norm_momentum"]
                layer.epsilon = flags["batch_norm_epsilon"]
                # utils.TpuBatchNormalization is fused=False: tf.nn.moments, whose (biased)
                # variance also feeds the moving variance.
                layer.fused = False
                bn_variables.update(id(v) for v in layer.variables)
        table = assign_drawn(model.variables, args.seed)

        global_step = tf.compat.v1.train.get_or_create_global_step()
        initial_lr = flags["base_learning_rate"] * flags["train_batch_size"] / 256.0
        decayed = tf.compat.v1.train.exponential_decay(
            initial_lr, global_step, steps_per_epoch * flags["lr_decay_epoch"], flags["lr_decay_factor"],
            staircase=True)
        warmup_steps = int(flags["lr_warmup_epochs"] * steps_per_epoch)

        def learning_rate():
            warmup = initial_lr * tf.cast(global_step, tf.float32) / tf.cast(warmup_steps, tf.float32)
            return tf.cond(global_step < warmup_steps, lambda: warmup, decayed)

        optimizer = tf.compat.v1.train.RMSPropOptimizer(
            learning_rate, flags["rmsprop_decay"], flags["rmsprop_momentum"], flags["rmsprop_epsilon"])
        ema = tf.compat.v1.train.ExponentialMovingAverage(flags["moving_average_decay"], num_updates=global_step)
        ema_vars = model.trainable_variables + [
            v for v in model.variables if "moving_mean" in v.name or "moving_variance" in v.name]
        # Creates the shadows from the initial weights (TF1 graph mode's initial values); at
        # step 0 with shadow == variable the update leaves them unchanged.
        ema.apply(ema_vars)
        l2_variables = [v for v in model.trainable_variables if id(v) not in bn_variables]
        # --start-step: resume at that global step (the schedule and the EMA's num_updates read
        # it); the shadows stay the initial weights and RMSProp's slots their fresh values.
        global_step.assign(args.start_step)

    def replica_step(features, labels_):
        with tf.GradientTape() as tape:
            logits = model(features, training=True)
            onehot = tf.one_hot(labels_, flags["num_label_classes"], dtype=logits.dtype)
            cross_entropy = tf.compat.v1.losses.softmax_cross_entropy(
                onehot_labels=onehot, logits=logits, label_smoothing=flags["label_smoothing"])
            l2 = flags["weight_decay"] * tf.add_n([tf.nn.l2_loss(v) for v in l2_variables])
            loss = (cross_entropy + l2) / strategy.num_replicas_in_sync
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables), global_step=global_step)
        return cross_entropy, l2

    @tf.function
    def step(features, labels_):
        cross_entropy, l2 = strategy.run(replica_step, args=(features, labels_))
        mean = tf.distribute.ReduceOp.MEAN
        return strategy.reduce(mean, cross_entropy, axis=None), strategy.reduce(mean, l2, axis=None)

    @tf.function
    def average():
        ema.apply(ema_vars)

    mean_rgb = [0.485 * 255, 0.456 * 255, 0.406 * 255]  # efficientnet_builder.MEAN_RGB
    stddev_rgb = [0.229 * 255, 0.224 * 255, 0.225 * 255]  # .STDDEV_RGB
    images, labels = ti.make_batches(args.seed, args.steps, args.batch, args.size, flags["num_label_classes"])
    learning_rates, losses, regularization = [], [], []
    for s in range(args.steps):
        learning_rates.append(float(learning_rate()))
        if args.dtype == "float64":
            features = normalized64(images[s], mean_rgb, stddev_rgb)
        else:
            features = (images[s].astype(np.float32) - np.float32(mean_rgb)) / np.float32(stddev_rgb)
        with strategy.scope():
            ce, l2 = step(per_replica(strategy, features, args.replicas),
                          per_replica(strategy, labels[s], args.replicas))
            average()
        losses.append(float(ce))
        regularization.append(float(l2))
        if args.early_step and s + 1 == args.early_step:
            early = [v.numpy() for v in model.variables]

    result = {
        "reference": "tensorflow/tpu models/official/efficientnet (main.py model_fn, utils.py), efficientnet-b0",
        "what_ran": run_efficientnet.__doc__.strip(),
        "tf_config": dict(flags, steps_per_epoch=steps_per_epoch, warmup_steps=warmup_steps),
        "bn_moving_variance": moving_variance_of(model),
        "tf_models_official": _dist_version("tf-models-official"),
        "num_classes": flags["num_label_classes"],
        "variables": table,
        "learning_rate": learning_rates,
        "total_loss": [c + r for c, r in zip(losses, regularization)],
        "regularization": regularization,
        "loss": losses,
        "_final": [v.numpy() for v in model.variables],
        "_final_ema": [ema.average(v).numpy() if v.ref() in set_of(ema_vars) else v.numpy()
                       for v in model.variables],
    }
    if args.early_step:
        result["_early"] = early
    result["final"] = summaries(result["_final"])
    result["final_ema"] = summaries(result["_final_ema"])
    return result


def set_of(variables):
    """Variables are unhashable under equality; compare by reference."""
    return {v.ref() for v in variables}


def _dist_version(name: str) -> str:
    from importlib import metadata

    return metadata.version(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", required=True, choices=sorted(TFVISION_CASES) + ["efficientnet_b0_tpu"])
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--early-step", type=int, default=None,
                        help="also record each tensor's motion after this many steps (default 4 with --start-step)")
    parser.add_argument("--start-step", type=int, default=0,
                        help="the optimizer step the run starts at (past warmup: every recipe value acts)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="the variables' and the computation's dtype (float64: see set_up_dtype)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.start_step and args.early_step is None:
        args.early_step = 4
    if args.early_step is not None and not 1 <= args.early_step <= args.steps:
        parser.error(f"--early-step {args.early_step}: expected a step in 1..--steps ({args.steps})")

    import tensorflow as tf

    set_up_dtype(args.dtype)
    if args.case in TFVISION_CASES:
        result = run_tfvision(args.case, args)
    else:
        result = run_efficientnet(args)
    images, labels = ti.make_batches(args.seed, args.steps, args.batch, args.size, result["num_classes"])
    golden = {
        "case": args.case,
        "command": "TF_USE_LEGACY_KERAS=1 python " + shlex.join(
            ["tools/make_reference_trajectories.py"] + sys.argv[1:]),
        "tensorflow": tf.__version__,
        "tf_keras": _dist_version("tf-keras"),
        "seed": args.seed, "steps": args.steps, "batch": args.batch, "size": args.size,
        "replicas": args.replicas,
        "start_step": args.start_step,
        "dtype": args.dtype,
        "batches_sha256": hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest(),
        **{k: v for k, v in result.items() if not k.startswith("_")},
    }
    if args.start_step:
        golden["what_ran"] += (f"; started at optimizer step {args.start_step} (--start-step: the step counter set, "
                               "the EMA's averages equal to the initial weights, the optimizer slots fresh)")
    suffix = (f"_t{args.start_step}" if args.start_step else "") + ("_f64" if args.dtype == "float64" else "")
    out = args.out or OUT / f"trajectory_{args.case}_{args.replicas}x{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.early_step:
        # How far each tensor moved from its drawn start after the first `--early-step` steps,
        # before float32 chaos parts trajectories (docs/REFERENCE_TRAJECTORIES.md, "Past
        # warmup"): a weight decay or L2 is a measurable part of that motion while it is far
        # under the final values' tolerance.
        initial = [ti.draw_variable(args.seed, i, ref["role"], ref["shape"]) for i, ref in enumerate(result["variables"])]
        golden["early_step"] = args.early_step
        golden["early_delta"] = summaries([f - w for f, w in zip(result["_early"], initial)])
        # One line per key (the summaries compact) keeps the files under ~300 KB.
        text = "{\n" + ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in golden.items()) + "\n}"
    else:
        text = json.dumps(golden, indent=1)
    out.write_text(text + "\n")
    print(f"wrote {out} ({out.stat().st_size} bytes); losses {golden['loss'][0]:.6f} .. {golden['loss'][-1]:.6f}")


if __name__ == "__main__":
    main()

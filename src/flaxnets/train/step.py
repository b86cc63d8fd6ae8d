"""The jitted train and eval steps: pure functions of (state, batch) over a device mesh.

Images arrive as uint8 and are normalised here, on the device. Gradient accumulation runs
inside one step (a `lax.scan` over micro-batches, gradients averaged), so the optimizer,
the schedule and the EMA all advance once per optimizer step. Under `jit` with the batch split
on the mesh's "data" axis, BatchNorm moments are taken over the whole (micro-)batch across
devices, unless the model groups them (`bn_group_size`).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from flaxnets.data import normalize
from flaxnets.train import parallel
from flaxnets.train.state import TrainState, all_finite, merge_model, split_model


def ema_decay_at(decay: float, step, dynamic: bool, start_step: int = 0):
    """The EMA decay used for the update that produces optimizer step `step` (1-based).

    With `dynamic`, min(decay, (1 + s) / (10 + s)), as TF's
    `ExponentialMovingAverage(num_updates=global_step)` and TF-Vision's `dynamic_decay`, where
    s = step - start_step; before `start_step` the decay is 0 (the average copies the weights),
    as TF-Vision's `ExponentialMovingAverage(start_step=...)`
    (official/modeling/optimization/ema_optimizer.py `update_average`).
    """
    step = jnp.asarray(step, jnp.float32)
    since = step - jnp.float32(start_step)
    value = jnp.float32(decay)
    if dynamic:
        value = jnp.minimum(value, (1.0 + since) / (10.0 + since))
    return jnp.where(step < start_step, jnp.float32(0.0), value)


def _ema(average, new, decay):
    return jax.tree.map(lambda a, n: a * decay + n.astype(a.dtype) * (1.0 - decay), average, new)


def _check_logits(logits):
    # Pitfall 7: low-precision logits make the loss (and training) collapse; refuse them.
    # float64 (a float64 model under jax_enable_x64: the float64 reference trajectories) passes.
    if logits.dtype not in (jnp.float32, jnp.float64):
        raise TypeError(f"the model returned {logits.dtype} logits; expected float32 under any compute dtype")


def _top_k_correct(logits, labels, k: int):
    k = min(k, logits.shape[-1])
    top = jax.lax.top_k(logits, k)[1]
    return jnp.any(top == labels[:, None], axis=-1)


def _hard_labels(labels):
    # Soft (mixed) labels are [B, C]; accuracy is against their arg-max.
    return labels if labels.ndim == 1 else jnp.argmax(labels, axis=-1)


def make_train_step(
    graphdef,
    tx: optax.GradientTransformation,
    *,
    loss_fn: Callable,
    mean,
    std,
    grad_accum_steps: int = 1,
    ema_decay: float | None = None,
    ema_dynamic_decay: bool = True,
    ema_start_step: int = 0,
    learning_rate_fn: Callable | None = None,
    mix_fn: Callable | None = None,
    num_classes: int | None = None,
    augment_fn: Callable | None = None,
    mesh=None,
    input_dtype="float32",
):
    """Build `train_step(state, batch) -> (state, metrics)`, jitted when `mesh` is given.

    `input_dtype`: what the images are normalised in (float64 only for a float64 model under
    jax_enable_x64, the float64 reference trajectories).

    `mix_fn(images, onehot_labels, key) -> (images, soft_labels)` (Mixup / CutMix from
    `flaxnets.data.mix`) runs on the normalised images of each micro-batch; it needs
    `num_classes`.

    `augment_fn(images, batch) -> images` (`flaxnets.data.augment_device.augment_batch`) applies
    the augmentation draws the batch carries to its uint8 images first, per example.

    `loss_fn(logits, labels)` returns the mean loss (float32); `batch` holds "image" (uint8
    NHWC) and "label" (int [B] or soft [B, C]). Metrics: train_loss, train_top1,
    learning_rate (if `learning_rate_fn`), grad_norm and `finite` (loss, gradients and the new
    state all finite). The step that makes the state non-finite is reported by `finite`.
    """
    k = int(grad_accum_steps)

    def forward_backward(params, batch_stats, other, images, labels, key):
        x = normalize(images, mean, std, input_dtype)
        if mix_fn is not None:
            onehot = labels if labels.ndim == 2 else jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
            x, labels = mix_fn(x, onehot, jax.random.fold_in(key, 1))

        def loss_of(p):
            model = merge_model(graphdef, p, batch_stats, other, train=True)
            logits = model(x, rngs=nnx.Rngs(dropout=key))
            _check_logits(logits)
            loss = loss_fn(logits, labels)
            # `other` moves too where the model keeps running statistics besides BatchNorm's
            # (the activation ranges of quantization-aware training, `flaxnets.quant`).
            return loss.astype(jnp.promote_types(loss.dtype, jnp.float32)), (nnx.state(model, nnx.BatchStat), split_model(model)[3], logits)

        (loss, (new_batch_stats, new_other, logits)), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
        correct = _top_k_correct(logits, _hard_labels(labels), 1).mean()
        return grads, new_batch_stats, new_other, loss, correct

    def train_step(state: TrainState, batch):
        images, labels = batch["image"], batch["label"]
        if augment_fn is not None:
            images = augment_fn(images, batch)
        step_key = jax.random.fold_in(state.rng, state.step)
        if k == 1:
            grads, batch_stats, other, loss, top1 = forward_backward(
                state.params, state.batch_stats, state.other, images, labels, step_key)
        else:
            # Micro-batch j takes examples j, j+k, j+2k, ...: every device keeps its own rows, and
            # the micro-batches do not depend on the device count.
            def split(x):
                x = x.reshape((x.shape[0] // k, k) + x.shape[1:]).swapaxes(0, 1)
                if mesh is not None:
                    x = jax.lax.with_sharding_constraint(
                        x, NamedSharding(mesh, PartitionSpec(None, parallel.DATA_AXIS)))
                return x

            keys = jax.random.split(step_key, k)

            # Every micro-batch updates the running statistics from the step's starting values and
            # the k results are averaged: one update per optimizer step with the mean of the
            # micro-batch moments, as the reference's per-replica BatchNorm does over k replicas
            # (k chained updates would make the momentum momentum**k).
            # The same holds for `other` (integer counts: each micro-step adds the same 1).
            def micro_step(carry, xs):
                grad_sum, stats_sum, other_sum = carry
                grads, batch_stats, other, loss, top1 = forward_backward(
                    state.params, state.batch_stats, state.other, *xs)
                grad_sum = jax.tree.map(jnp.add, grad_sum, grads)
                stats_sum = jax.tree.map(jnp.add, stats_sum, batch_stats)
                other_sum = jax.tree.map(jnp.add, other_sum, other)
                return (grad_sum, stats_sum, other_sum), (loss, top1)

            zeros = (jax.tree.map(jnp.zeros_like, state.params), jax.tree.map(jnp.zeros_like, state.batch_stats),
                     jax.tree.map(jnp.zeros_like, state.other))
            (grad_sum, stats_sum, other_sum), (losses, top1s) = jax.lax.scan(
                micro_step, zeros, (split(images), split(labels), keys))
            grads = jax.tree.map(lambda g: g / k, grad_sum)
            batch_stats = jax.tree.map(lambda s: s / k, stats_sum)
            other = jax.tree.map(lambda s: s // k if jnp.issubdtype(s.dtype, jnp.integer) else s / k, other_sum)
            loss, top1 = losses.mean(), top1s.mean()

        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        step = state.step + 1
        ema_params, ema_batch_stats = state.ema_params, state.ema_batch_stats
        if ema_params is not None:
            decay = ema_decay_at(ema_decay, step, ema_dynamic_decay, ema_start_step)
            ema_params = _ema(ema_params, params, decay)
            if ema_batch_stats is not None:
                ema_batch_stats = _ema(ema_batch_stats, batch_stats, decay)
        new_state = state.replace(step=step, params=params, batch_stats=batch_stats, other=other, opt_state=opt_state,
                                  ema_params=ema_params, ema_batch_stats=ema_batch_stats)
        metrics = {
            "train_loss": loss,
            "train_top1": top1,
            "grad_norm": optax.global_norm(grads),
            "finite": jnp.isfinite(loss) & all_finite((params, batch_stats, opt_state)),
        }
        if learning_rate_fn is not None:
            metrics["learning_rate"] = jnp.asarray(learning_rate_fn(state.step), jnp.float32)
        return new_state, metrics

    if mesh is None:
        return jax.jit(train_step, donate_argnums=0)
    replicated = parallel.replicated(mesh)
    return jax.jit(train_step, in_shardings=(replicated, parallel.batch_sharding(mesh)),
                   out_shardings=(replicated, replicated), donate_argnums=0)


def make_eval_step(graphdef, *, mean, std, mesh=None):
    """Build `eval_step(params, batch_stats, other, batch) -> outputs` (jitted): the one
    compiled evaluation of training, `flaxnets eval` and `flaxnets predict`.

    `batch` has "image" (uint8 NHWC), "label" and "mask"; outputs are the int32 sums over the
    masked-in examples top1, top5 (top-min(5, classes)) and count, and the float32 "logits"
    of every row (split over the mesh like the batch).
    """

    def eval_step(params, batch_stats, other, batch):
        model = merge_model(graphdef, params, batch_stats, other, train=False)
        logits = model(normalize(batch["image"], mean, std))
        _check_logits(logits)
        mask = batch["mask"].astype(jnp.int32)
        labels = batch["label"]
        return {
            "top1": jnp.sum(_top_k_correct(logits, labels, 1) * mask),
            "top5": jnp.sum(_top_k_correct(logits, labels, 5) * mask),
            "count": jnp.sum(mask),
            "logits": logits,
        }

    if mesh is None:
        return jax.jit(eval_step)
    replicated = parallel.replicated(mesh)
    out_shardings = {"top1": replicated, "top5": replicated, "count": replicated,
                     "logits": parallel.batch_sharding(mesh)}
    return jax.jit(eval_step, in_shardings=(replicated, replicated, replicated, parallel.batch_sharding(mesh)),
                   out_shardings=out_shardings)

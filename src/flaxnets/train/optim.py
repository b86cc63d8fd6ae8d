"""Optimizers as optax GradientTransformations built from `Config.optimizer` and the schedule.

Weight-decay and L2 masks select parameters by *kind* (`flaxnets.models.param_kinds`), never by
layer name, so renaming a layer cannot change a recipe (docs/RECIPES.md pitfall 10).

Chain, in order: L2 (`l2 * w` added to the gradient, as the gradient of `0.5 * l2 * ||w||^2` in the
TF references' loss) -> global-norm clipping -> the optimizer, whose last step applies the
learning rate from `flaxnets.train.schedules.build_schedule`.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from flaxnets.config import PARAM_KINDS, Config
from flaxnets.errors import FlaxnetsError, UsageError
from flaxnets.train.schedules import Schedule, build_schedule

Path = tuple[Hashable, ...]


# ---------------------------------------------------------------------------------------------
# Masks by parameter kind


def _key_of(entry) -> Hashable:
    for attr in ("key", "idx", "name"):
        if hasattr(entry, attr):
            return getattr(entry, attr)
    return str(entry)


def _kind_lookup(kinds: Mapping[Path, str], path) -> str:
    keys = tuple(_key_of(e) for e in path)
    # The longest prefix that is a known parameter path: nnx.State leaves add a trailing
    # `.value` to the path reported by nnx.to_flat_state.
    for end in range(len(keys), 0, -1):
        kind = kinds.get(keys[:end])
        if kind is not None:
            return kind
    raise FlaxnetsError(f"parameter {'/'.join(map(str, keys))} has no kind in param_kinds(model)")


def kind_mask(kinds: Mapping[Path, str], exclude: Sequence[str]) -> Callable[[Any], Any]:
    """A mask function for optax: True for parameters whose kind is not in `exclude`.

    `kinds` maps each parameter path (tuple of keys, as `nnx.to_flat_state` gives) to one of
    `flaxnets.config.PARAM_KINDS`. The returned function takes a params pytree (nested dicts or an
    `nnx.State`) and returns a pytree of bools of the same structure.
    """
    unknown = sorted(set(exclude) - set(PARAM_KINDS))
    if unknown:
        raise UsageError(f"parameter kinds {unknown}: expected some of {list(PARAM_KINDS)}")
    bad = sorted({k for k in kinds.values() if k not in PARAM_KINDS})
    if bad:
        raise FlaxnetsError(f"param_kinds reported unknown kinds {bad}; expected {list(PARAM_KINDS)}")
    excluded = frozenset(exclude)

    def mask(params):
        return jax.tree_util.tree_map_with_path(lambda path, _: _kind_lookup(kinds, path) not in excluded, params)

    return mask


def masked_l2(l2: float, kinds: Mapping[Path, str], exclude: Sequence[str]) -> optax.GradientTransformation:
    """Add `l2 * w` to the gradient of every parameter whose kind is not excluded (full strength,
    not `0.5 * l2 * w`: docs/RECIPES.md pitfall 2)."""
    return optax.add_decayed_weights(l2, mask=kind_mask(kinds, exclude))


# ---------------------------------------------------------------------------------------------
# RMSProp with TF1 semantics


class RmsPropTfState(NamedTuple):
    """State of `rmsprop_tf`: step count, mean square and momentum accumulators."""

    count: jnp.ndarray
    mean_square: Any
    momentum: Any


def rmsprop_tf(
    learning_rate: float | Schedule,
    decay: float = 0.9,
    momentum: float = 0.9,
    eps: float = 1e-3,
    initial_accumulator: float = 1.0,
) -> optax.GradientTransformation:
    """RMSProp as TF1's `tf.train.RMSPropOptimizer` (and TF's ApplyRMSProp kernel) computes it.

        ms  = decay * ms + (1 - decay) * g**2          (ms starts at `initial_accumulator`)
        mom = momentum * mom + lr * g / sqrt(ms + eps)
        w  -= mom

    The learning rate sits inside the momentum accumulator, so a changing schedule cannot be
    applied afterwards by `optax.scale_by_learning_rate`; this transformation therefore takes the
    schedule and returns the final (negative) update. optax's `rmsprop` puts eps outside the root
    and starts ms at 0, which does not train EfficientNet with these settings.
    """
    schedule = learning_rate if callable(learning_rate) else (lambda _: learning_rate)

    def init(params):
        return RmsPropTfState(
            count=jnp.zeros([], jnp.int32),
            mean_square=jax.tree.map(lambda p: jnp.full_like(p, initial_accumulator), params),
            momentum=jax.tree.map(jnp.zeros_like, params),
        )

    def update(updates, state, params=None):
        del params
        lr = jnp.asarray(schedule(state.count), jnp.float32)
        mean_square = jax.tree.map(lambda ms, g: decay * ms + (1.0 - decay) * jnp.square(g), state.mean_square, updates)
        mom = jax.tree.map(
            lambda m, g, ms: momentum * m + (lr * g * jax.lax.rsqrt(ms + eps)).astype(m.dtype),
            state.momentum,
            updates,
            mean_square,
        )
        new_updates = jax.tree.map(jnp.negative, mom)
        return new_updates, RmsPropTfState(count=state.count + 1, mean_square=mean_square, momentum=mom)

    return optax.GradientTransformation(init, update)


# ---------------------------------------------------------------------------------------------
# Adam with Keras' epsilon placement


class ScaleByAdamKerasState(NamedTuple):
    """State of `scale_by_adam_keras`."""

    count: jnp.ndarray
    mu: Any
    nu: Any


def scale_by_adam_keras(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-7) -> optax.GradientTransformation:
    """Adam as TF/Keras compute it: `sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)`.

    Keras adds eps to the un-corrected `sqrt(v)` ("epsilon hat"); optax adds it after bias
    correction. The two differ only while `1 - b2^t` is far from 1 (the first few thousand steps).
    """

    def init(params):
        return ScaleByAdamKerasState(
            count=jnp.zeros([], jnp.int32),
            mu=jax.tree.map(jnp.zeros_like, params),
            nu=jax.tree.map(jnp.zeros_like, params),
        )

    def update(updates, state, params=None):
        del params
        mu = jax.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: b2 * v + (1.0 - b2) * jnp.square(g), state.nu, updates)
        count = state.count + 1
        t = count.astype(jnp.float32)
        correction = jnp.sqrt(1.0 - b2**t) / (1.0 - b1**t)
        new_updates = jax.tree.map(lambda m, v: correction * m / (jnp.sqrt(v) + eps), mu, nu)
        return new_updates, ScaleByAdamKerasState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init, update)


# ---------------------------------------------------------------------------------------------
# The optimizer of a config


def build_optimizer(
    config: Config,
    kinds: Mapping[Path, str],
    num_train_examples: int,
    schedule: Schedule | None = None,
) -> optax.GradientTransformation:
    """The full optax chain for `config.optimizer` with `config.schedule`.

    `kinds` is `flaxnets.models.param_kinds(model)`; `num_train_examples` converts the schedule's
    epochs to steps. One call of `update` is one optimizer step (after any gradient accumulation);
    the schedule is evaluated at the number of steps taken before it.
    """
    o = config.optimizer
    lr = schedule if schedule is not None else build_schedule(config, num_train_examples)
    chain = []
    if o.l2 > 0:
        chain.append(masked_l2(o.l2, kinds, o.l2_exclude))
    if o.grad_clip_norm is not None:
        if o.grad_clip_norm <= 0:
            raise UsageError(f"optimizer.grad_clip_norm={o.grad_clip_norm}: expected a positive number or none")
        chain.append(optax.clip_by_global_norm(o.grad_clip_norm))

    decoupled = []
    if o.weight_decay > 0:
        decoupled = [optax.add_decayed_weights(o.weight_decay, mask=kind_mask(kinds, o.weight_decay_exclude))]

    if o.name == "adamw":
        adam = scale_by_adam_keras(o.b1, o.b2, o.eps) if o.adam_epsilon_hat else optax.scale_by_adam(o.b1, o.b2, o.eps)
        # Decoupled decay multiplied by the learning rate, as optax.adamw and TF-Vision's
        # AdamWeightDecay (`w -= lr * weight_decay_rate * w`) both do.
        chain += [adam, *decoupled, optax.scale_by_learning_rate(lr)]
    elif o.name == "sgd":
        if o.momentum:
            chain.append(optax.trace(decay=o.momentum, nesterov=o.nesterov))
        chain += [*decoupled, optax.scale_by_learning_rate(lr)]
    elif o.name == "rmsprop_tf":
        if o.weight_decay > 0:
            raise UsageError(
                f"optimizer.weight_decay={o.weight_decay} with rmsprop_tf: the TF references "
                "regularise RMSProp runs with optimizer.l2; set optimizer.weight_decay=0"
            )
        chain.append(rmsprop_tf(lr, o.rmsprop_decay, o.rmsprop_momentum, o.rmsprop_eps, o.rmsprop_initial_accumulator))
    else:
        raise UsageError(f"optimizer.name={o.name!r}: expected adamw, rmsprop_tf or sgd")
    return optax.chain(*chain)

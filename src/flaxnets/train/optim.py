"""Optimizers as optax GradientTransformations built from `Config.optimizer` and the schedule.

Weight-decay and L2 masks select parameters by *kind* (`flaxnets.models.param_kinds`), never by
layer name, so renaming a layer cannot change a recipe (docs/RECIPES.md pitfall 10).

Chain, in order: L2 (`l2 * w` added to the gradient, as the gradient of `0.5 * l2 * ||w||^2` in the
TF references' loss) -> global-norm clipping -> the optimizer named from
`flaxnets.optimizers.OPTIMIZERS`, whose last step applies the learning rate from
`flaxnets.train.schedules.build_schedule` -> decoupled weight decay (`w -= lr * weight_decay * w`).
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Mapping, Sequence

import jax
import jax.numpy as jnp
import optax

from flaxnets.config import PARAM_KINDS, Config
from flaxnets.errors import FlaxnetsError, UsageError
from flaxnets.optimizers import OPTIMIZERS, Schedule
from flaxnets.train.schedules import build_schedule

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
# Decoupled weight decay


def decoupled_weight_decay(weight_decay: float, learning_rate: float | Schedule, mask) -> optax.GradientTransformation:
    """Add `-lr * weight_decay * w` to the (final, negative) update of every masked-in parameter,
    `lr` being the schedule at this transformation's own step count, which advances with the
    optimizer's. After any optimizer this is `w -= lr * weight_decay * w` (AdamW; TF-Vision's
    AdamWeightDecay); optax builds it into `adamw` only."""
    decay = optax.chain(optax.add_decayed_weights(weight_decay), optax.scale_by_learning_rate(learning_rate))

    def update(updates, state, params=None):
        step, state = decay.update(jax.tree.map(jnp.zeros_like, updates), state, params)
        return jax.tree.map(jnp.add, updates, step), state

    return optax.masked(optax.GradientTransformation(decay.init, update), mask)


# ---------------------------------------------------------------------------------------------
# The optimizer of a config


def build_optimizer(
    config: Config,
    kinds: Mapping[Path, str],
    num_train_examples: int,
    schedule: Schedule | None = None,
) -> optax.GradientTransformation:
    """The full optax chain for `config.optimizer` with `config.schedule`: L2 -> clipping -> the
    optimizer named from `flaxnets.optimizers.OPTIMIZERS` -> decoupled weight decay.

    `kinds` is `flaxnets.models.param_kinds(model)`; `num_train_examples` converts the schedule's
    epochs to steps. One call of `update` is one optimizer step (after any gradient accumulation);
    the schedule is evaluated at the number of steps taken before it.
    """
    o = config.optimizer
    entry = OPTIMIZERS[o.name]
    lr = schedule if schedule is not None else build_schedule(config, num_train_examples)
    chain = []
    if o.l2 > 0:
        chain.append(masked_l2(o.l2, kinds, o.l2_exclude))
    if o.grad_clip_norm is not None:
        if o.grad_clip_norm <= 0:
            raise UsageError(f"optimizer.grad_clip_norm={o.grad_clip_norm}: expected a positive number or none")
        chain.append(optax.clip_by_global_norm(o.grad_clip_norm))
    chain.append(entry.make(lr, **o.args))
    if o.weight_decay > 0:
        if entry.no_weight_decay:
            raise UsageError(f"optimizer.weight_decay={o.weight_decay} with {o.name}: {entry.no_weight_decay}; "
                             "set optimizer.weight_decay=0")
        chain.append(decoupled_weight_decay(o.weight_decay, lr, kind_mask(kinds, o.weight_decay_exclude)))
    return optax.chain(*chain)

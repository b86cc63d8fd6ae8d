"""The train state: everything a run needs to continue exactly, as one pytree.

The model is split with `nnx.split` into a static graph definition (kept outside the state) and
its variables: trainable parameters (`nnx.Param`), BatchNorm running statistics
(`nnx.BatchStat`) and anything else the model holds (`other`, usually empty). Beside them: the
optimizer state, the EMA of the parameters (and of the BatchNorm statistics where the recipe
says), the optimizer step and the base RNG key from which every step's dropout key is derived.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct


@struct.dataclass
class TrainState:
    """One pytree; `step` counts optimizer steps (not micro-steps)."""

    step: jax.Array
    params: nnx.State
    batch_stats: nnx.State
    other: nnx.State
    opt_state: Any
    #: None when the recipe has no EMA.
    ema_params: nnx.State | None
    #: None unless the recipe averages BatchNorm statistics too (then EMA evaluation uses these).
    ema_batch_stats: nnx.State | None
    rng: jax.Array

    def eval_variables(self, ema: bool = False) -> tuple[nnx.State, nnx.State, nnx.State]:
        """(params, batch_stats, other) to evaluate: the raw weights, or the EMA weights with the
        EMA BatchNorm statistics if they are averaged, else the live ones."""
        if not ema:
            return self.params, self.batch_stats, self.other
        if self.ema_params is None:
            raise ValueError("this run has no EMA weights (ema.decay is none)")
        batch_stats = self.batch_stats if self.ema_batch_stats is None else self.ema_batch_stats
        return self.ema_params, batch_stats, self.other


def split_model(model: nnx.Module):
    """(graphdef, params, batch_stats, other) of `model`."""
    return nnx.split(model, nnx.Param, nnx.BatchStat, ...)


def _copy(tree):
    # Host copies: one jnp.array per leaf would compile one XLA program per shape at start-up.
    # (Under tracing, as when restore builds an abstract state, the copy stays in JAX.)
    return jax.tree.map(lambda x: jnp.array(x) if isinstance(x, jax.core.Tracer) else np.array(x), tree)


def create_train_state(model: nnx.Module, tx: optax.GradientTransformation, *, seed: int,
                       ema: bool = False, ema_batch_stats: bool = False):
    """Split `model` and build the initial `TrainState`; returns (graphdef, state).

    The RNG key is `fold_in(PRNGKey(seed), 1)`, distinct from the key that initialised the
    weights; step `s` uses `fold_in(rng, s)`.
    """
    graphdef, params, batch_stats, other = split_model(model)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        other=other,
        # One jitted init instead of a program per zeros_like leaf.
        opt_state=jax.jit(tx.init)(params),
        ema_params=_copy(params) if ema else None,
        ema_batch_stats=_copy(batch_stats) if ema and ema_batch_stats else None,
        rng=jax.random.fold_in(jax.random.PRNGKey(seed), 1),
    )
    return graphdef, state


def merge_model(graphdef, params, batch_stats, other, *, train: bool) -> nnx.Module:
    """A module from its parts, switched to train or eval mode."""
    model = nnx.merge(graphdef, params, batch_stats, other, copy=True)
    if train:
        model.train()
    else:
        model.eval()
    return model


def all_finite(tree) -> jax.Array:
    """True when every floating-point leaf of `tree` is free of NaN and Inf (one device scalar)."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)]
    if not leaves:
        return jnp.asarray(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))

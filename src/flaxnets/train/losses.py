"""Softmax cross-entropy with label smoothing, always computed in float32 (float64 for float64
logits; optax's `smooth_labels` and `softmax_cross_entropy`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def cross_entropy_loss(logits: jnp.ndarray, labels: jnp.ndarray, label_smoothing: float = 0.0) -> jnp.ndarray:
    """Per-example softmax cross-entropy `[batch]` in float32.

    `labels` are integer class ids `[batch]` or soft targets `[batch, classes]` (Mixup/CutMix).
    Smoothing is applied to the very targets the loss uses (docs/RECIPES.md pitfall 1), and the logits
    are cast to float32 first, whatever the compute dtype (pitfall 7); float64 logits (the
    float64 reference trajectories) stay float64.
    """
    logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
    if jnp.issubdtype(labels.dtype, jnp.integer):
        targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    else:
        if labels.shape != logits.shape:
            raise ValueError(f"soft labels of shape {labels.shape} do not match logits {logits.shape}")
        targets = labels.astype(logits.dtype)
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)

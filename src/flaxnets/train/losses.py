"""Softmax cross-entropy with label smoothing, always computed in float32."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def smooth_labels(labels: jnp.ndarray, label_smoothing: float) -> jnp.ndarray:
    """`labels * (1 - s) + s / num_classes` for one-hot or soft labels `[batch, classes]`."""
    num_classes = labels.shape[-1]
    return labels * (1.0 - label_smoothing) + label_smoothing / num_classes


def cross_entropy_loss(logits: jnp.ndarray, labels: jnp.ndarray, label_smoothing: float = 0.0) -> jnp.ndarray:
    """Per-example softmax cross-entropy `[batch]` in float32.

    `labels` are integer class ids `[batch]` or soft targets `[batch, classes]` (Mixup/CutMix).
    Smoothing is applied to the very targets the loss uses (docs/RECIPES.md pitfall 1), and the logits
    are cast to float32 first, whatever the compute dtype (pitfall 7).
    """
    logits = logits.astype(jnp.float32)
    num_classes = logits.shape[-1]
    if jnp.issubdtype(labels.dtype, jnp.integer):
        targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    else:
        if labels.shape != logits.shape:
            raise ValueError(f"soft labels of shape {labels.shape} do not match logits {logits.shape}")
        targets = labels.astype(jnp.float32)
    if label_smoothing:
        targets = smooth_labels(targets, label_smoothing)
    return -jnp.sum(targets * jax.nn.log_softmax(logits, axis=-1), axis=-1)

"""Batch-level Mixup and CutMix on the device (jax.numpy), TF-Vision `MixupAndCutmix` semantics.

Inputs are float32 normalised images [B, H, W, C] and one-hot (or already soft) float labels
[B, K]; outputs are mixed images and soft labels. As in TF-Vision:

* every example draws its own lambda ~ Beta(alpha, alpha) and mixes with the example at the
  mirrored batch position (the batch reversed), so call these on the per-replica batch (e.g.
  inside `shard_map`) to mix within a replica as TF-Vision does;
* CutMix pastes a box of 2 * (cut // 2) pixels per side, cut = int(sqrt(1 - lambda) * H) for
  both sides (TF-Vision sizes the width from the height too; the same for square inputs),
  centred uniformly and clipped at the borders, and sets the label weight to
  1 - cut * cut / (H * W) from the unclipped size;
* with probability `prob` the batch is mixed, CutMix with probability `switch_prob`, else Mixup.

Label smoothing is left to the loss: smoothing is linear, so smoothing the mixed labels equals
TF-Vision's mixing of smoothed labels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _mix_labels(labels: jax.Array, lam: jax.Array) -> jax.Array:
    lam = lam.astype(labels.dtype)[:, None]
    return lam * labels + (1.0 - lam) * labels[::-1]


def mixup(
    images: jax.Array, labels: jax.Array, key: jax.Array, alpha: float = 0.8
) -> tuple[jax.Array, jax.Array]:
    """Per-example Mixup with the reversed batch; returns (images, soft labels)."""
    lam = jax.random.beta(key, alpha, alpha, (images.shape[0],), dtype=jnp.float32)
    weight = lam.astype(images.dtype).reshape((-1,) + (1,) * (images.ndim - 1))
    mixed = weight * images + (1.0 - weight) * images[::-1]
    return mixed, _mix_labels(labels, lam)


def cutmix(
    images: jax.Array, labels: jax.Array, key: jax.Array, alpha: float = 1.0
) -> tuple[jax.Array, jax.Array]:
    """Per-example CutMix with the reversed batch; returns (images, soft labels)."""
    batch, height, width = images.shape[:3]
    key_lam, key_y, key_x = jax.random.split(key, 3)
    lam = jax.random.beta(key_lam, alpha, alpha, (batch,), dtype=jnp.float32)
    cut = (jnp.sqrt(1.0 - lam) * height).astype(jnp.int32)
    half = cut // 2
    center_y = jax.random.randint(key_y, (batch,), 0, height)
    center_x = jax.random.randint(key_x, (batch,), 0, width)
    rows = jnp.arange(height)[None, :]
    cols = jnp.arange(width)[None, :]
    in_rows = (rows >= (center_y - half)[:, None]) & (rows < (center_y + half)[:, None])
    in_cols = (cols >= (center_x - half)[:, None]) & (cols < (center_x + half)[:, None])
    box = in_rows[:, :, None] & in_cols[:, None, :]
    mixed = jnp.where(box[..., None], images[::-1], images)
    label_lam = 1.0 - (cut * cut).astype(jnp.float32) / (height * width)
    return mixed, _mix_labels(labels, label_lam)


def mixup_or_cutmix(
    images: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    *,
    mixup_alpha: float = 0.8,
    cutmix_alpha: float = 1.0,
    prob: float = 1.0,
    switch_prob: float = 0.5,
) -> tuple[jax.Array, jax.Array]:
    """TF-Vision MixupAndCutmix: with probability `prob` mix the batch, by CutMix with
    probability `switch_prob` else Mixup. An alpha of 0 disables that method."""
    if not mixup_alpha and not cutmix_alpha:
        raise ValueError("mixup_or_cutmix: mixup_alpha and cutmix_alpha are both 0")
    key_apply, key_switch, key_mix = jax.random.split(key, 3)
    apply = jax.random.uniform(key_apply) < prob
    if not cutmix_alpha:
        mixed_images, mixed_labels = mixup(images, labels, key_mix, mixup_alpha)
    elif not mixup_alpha:
        mixed_images, mixed_labels = cutmix(images, labels, key_mix, cutmix_alpha)
    else:
        use_cutmix = jax.random.uniform(key_switch) < switch_prob
        cut_images, cut_labels = cutmix(images, labels, key_mix, cutmix_alpha)
        mix_images, mix_labels = mixup(images, labels, key_mix, mixup_alpha)
        mixed_images = jnp.where(use_cutmix, cut_images, mix_images)
        mixed_labels = jnp.where(use_cutmix, cut_labels, mix_labels)
    return jnp.where(apply, mixed_images, images), jnp.where(apply, mixed_labels, labels)

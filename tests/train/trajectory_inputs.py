"""What the reference-trajectory goldens and tests/train/test_reference_trajectory.py share:
the seed-drawn initial weights, the fixed batches and the per-tensor summaries.

Pure NumPy, so that `tools/make_reference_trajectories.py` (run in a TensorFlow venv) and the
suite draw the very same values. A tensor is drawn in the *reference's* layout (TF's shape,
e.g. a depthwise kernel (k, k, C, 1)) and reshaped to ours; its values depend only on the seed,
its position in the reference's variable order, its role and that shape.
"""

from __future__ import annotations

import numpy as np

ROLES = ("kernel", "depthwise_kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance")
#: Flat positions sampled from each tensor, besides its sum, absolute sum and L2 norm.
SAMPLES = 4


def role_of(name: str) -> str:
    """The role of a TF variable from its name (`.../depthwise_kernel:0` -> depthwise_kernel)."""
    leaf = name.split("/")[-1].split(":")[0]
    if leaf not in ROLES:
        raise ValueError(f"variable {name!r}: expected its last name part to be one of {ROLES}")
    return leaf


def draw_variable(seed: int, index: int, role: str, shape) -> np.ndarray:
    """The initial value (float32, `shape` in TF's layout) of variable `index`.

    Kernels are normal with variance 1/fan_in (a depthwise kernel's fan-in is its window);
    BatchNorm scale, offset and statistics are perturbed away from 1/0 so that a mapping that
    swaps two of them shows.
    """
    rng = np.random.default_rng([seed, index])
    shape = tuple(int(s) for s in shape)
    if role == "kernel":
        fan_in = int(np.prod(shape[:-1]))
        values = rng.standard_normal(shape) / np.sqrt(fan_in)
    elif role == "depthwise_kernel":
        values = rng.standard_normal(shape) / np.sqrt(shape[0] * shape[1])
    elif role == "bias":
        values = 0.01 * rng.standard_normal(shape)
    elif role == "gamma":
        values = 1.0 + 0.1 * rng.standard_normal(shape)
    elif role == "beta":
        values = 0.1 * rng.standard_normal(shape)
    elif role == "moving_mean":
        values = 0.1 * rng.standard_normal(shape)
    elif role == "moving_variance":
        values = rng.uniform(0.5, 1.5, shape)
    else:
        raise ValueError(f"role {role!r}: expected one of {ROLES}")
    return values.astype(np.float32)


def make_batches(seed: int, steps: int, batch: int, size: int, num_classes: int):
    """`steps` batches of uint8 NHWC images (smooth random colour fields plus noise, so the
    network sees spatial structure) and int32 labels."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (steps, batch, 4, 4, 3))
    # 4x4 colour fields upsampled by repetition: spatial structure with exact NumPy arithmetic.
    fine = np.repeat(np.repeat(coarse, size // 4, axis=2), size // 4, axis=3)
    noise = rng.normal(0.0, 20.0, fine.shape)
    images = np.clip(np.rint(fine + noise), 0, 255).astype(np.uint8)
    labels = rng.integers(0, num_classes, (steps, batch)).astype(np.int32)
    return images, labels


def summarize(values, index: int) -> dict:
    """Sum, absolute sum, L2 norm (float64 accumulation) and `SAMPLES` entries at positions
    drawn from `index` (the same positions on both sides)."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    positions = np.random.default_rng([7, index]).integers(0, flat.size, SAMPLES)
    return {
        "sum": float(flat.sum()),
        "abs_sum": float(np.abs(flat).sum()),
        "l2": float(np.sqrt(np.square(flat).sum())),
        "positions": [int(p) for p in positions],
        "samples": [float(flat[p]) for p in positions],
    }


def departure(ours: dict, ref: dict, rms_size: int | None = None) -> float:
    """How far summary `ours` is from summary `ref`, in the units the trajectory tests' tensor
    tolerance is stated in: the largest of |l2 - l2'| / l2', |abs_sum - abs_sum'| / abs_sum',
    |sum - sum'| / abs_sum' and, with `rms_size` (the tensor's size), the worst sampled entry's
    difference over the reference's RMS. 0 when both are exactly zero."""
    def ratio(diff, scale):
        return 0.0 if diff == 0 else (float("inf") if scale == 0 else diff / scale)

    worst = max(ratio(abs(ours["l2"] - ref["l2"]), ref["l2"]),
                ratio(abs(ours["abs_sum"] - ref["abs_sum"]), ref["abs_sum"]),
                ratio(abs(ours["sum"] - ref["sum"]), ref["abs_sum"]))
    if rms_size is not None:
        rms = ref["l2"] / np.sqrt(rms_size)
        worst = max([worst] + [ratio(abs(a - b), rms) for a, b in zip(ours["samples"], ref["samples"])])
    return worst

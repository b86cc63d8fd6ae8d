"""The deterministic weight rule shared by tools/make_mnv4_goldens.py (TensorFlow side) and
tests/models/test_mobilenet_v4.py (our side): every array is drawn from NumPy's PCG64 seeded by
(seed, crc32 of its dotted flaxnets path), in flaxnets' layout, so that the golden file holds
only inputs and logits and both sides rebuild the same weights. Needs NumPy only.
"""

from __future__ import annotations

import zlib

import numpy as np


def seeded_value(path: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """The float32 array for the parameter or BatchNorm statistic at dotted `path` (e.g.
    "blocks.3.expand_bn.var"), by the role its last name gives: kernels N(0, 1/fan_in) (a
    depthwise kernel (k, k, 1, C) has fan-in k*k), BN scale and variance U(0.5, 1.5), layer
    scale U(0.5, 1.0), biases and BN means N(0, 0.1)."""
    rng = np.random.default_rng([seed, zlib.crc32(path.encode())])
    role = path.rsplit(".", 1)[-1]
    if role == "kernel":
        fan_in = int(np.prod(shape[:-1]))
        return rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape).astype(np.float32)
    if role in ("scale", "var"):
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if role == "gamma":
        # Up to 1.5, Hybrid-L's 40 residual branches grow its logits until float32 rounding
        # alone moves them 3e-5 (relative; 4e-7 up to 1.0), too near the 1e-4 of the goldens.
        return rng.uniform(0.5, 1.0, shape).astype(np.float32)
    if role in ("bias", "mean"):
        return rng.normal(0.0, 0.1, shape).astype(np.float32)
    raise ValueError(f"no rule for {path!r}")


def seeded_images(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Normalised float32 NHWC inputs, N(0, 1)."""
    return np.random.default_rng([seed, 1 << 20]).standard_normal(shape).astype(np.float32)

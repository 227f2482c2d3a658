"""The fixed inputs the EfficientNet-Lite0 port is checked on (numpy only: the torch-side converter
imports this too, so both sides see the very same pixels)."""

from __future__ import annotations

import numpy as np

REFERENCE_SEED = 2026
REFERENCE_SIZE = 224


def reference_inputs() -> np.ndarray:
    """Two noise images and a colour gradient, NHWC in the service's [0, 1] space."""
    rng = np.random.default_rng(REFERENCE_SEED)
    noise = rng.random((2, REFERENCE_SIZE, REFERENCE_SIZE, 3), dtype=np.float32)
    ramp = np.linspace(0.0, 1.0, REFERENCE_SIZE, dtype=np.float32)
    gradient = np.stack(np.broadcast_arrays(ramp[:, None], ramp[None, :], ramp[:, None] * ramp), -1)
    return np.concatenate([noise, gradient[None]]).astype(np.float32)

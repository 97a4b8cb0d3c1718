"""Random CSRNet weights for tests that need the network's shapes, not its training."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from crowdwatch.detectors.csrnet_onnx import expected_shapes

FloatArray = npt.NDArray[np.float32]


def random_weights(seed: int = 0) -> dict[str, FloatArray]:
    """He-initialised tensors of CSRNet's shapes, small positive biases (so ReLUs pass signal)."""
    rng = np.random.default_rng(seed)
    out: dict[str, FloatArray] = {}
    for key, shape in expected_shapes().items():
        if key.endswith(".weight"):
            fan_in = int(np.prod(shape[1:]))
            out[key] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        else:
            out[key] = np.full(shape, 0.01, dtype=np.float32)
    return out

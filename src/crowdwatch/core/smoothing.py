"""Count smoothing, so that one missed or doubled detection does not open or close a gathering."""

from __future__ import annotations

from collections import deque
from typing import Protocol

import numpy as np


class Smoother(Protocol):
    def update(self, value: float) -> float: ...


class NoSmoothing:
    def update(self, value: float) -> float:
        return value


class MedianSmoother:
    """Median of the last `window` values: removes single-frame spikes; lags a step change
    by (window-1)/2 samples."""

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self._values: deque[float] = deque(maxlen=window)

    def update(self, value: float) -> float:
        self._values.append(value)
        return float(np.median(np.fromiter(self._values, dtype=np.float64)))


class EmaSmoother:
    def __init__(self, alpha: float) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")
        self._alpha = alpha
        self._value: float | None = None

    def update(self, value: float) -> float:
        self._value = value if self._value is None else self._alpha * value + (1 - self._alpha) * self._value
        return self._value


def make_smoother(method: str, window: int = 3, alpha: float = 0.5) -> Smoother:
    if method == "median":
        return MedianSmoother(window)
    if method == "ema":
        return EmaSmoother(alpha)
    if method == "none":
        return NoSmoothing()
    raise ValueError(f"unknown smoothing method {method!r}")

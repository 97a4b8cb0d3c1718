"""Pick at most one frame per period from a stream of capture times. Pure."""

from __future__ import annotations

import math

# Frame times are index/fps; float error must not push a frame that lies on the grid past it.
_EPS = 1e-6


class Sampler:
    """Takes the first frame, then the first frame at or after each tick of a grid of
    `period_s` anchored at that first frame. A fixed grid (not "period after the last taken
    frame") keeps the rate exact when frames do not fall on ticks."""

    def __init__(self, period_s: float) -> None:
        if period_s <= 0:
            raise ValueError(f"period_s must be > 0, got {period_s}")
        self._period = period_s
        self._origin: float | None = None
        self._next_tick = 0

    def take(self, t: float) -> bool:
        if self._origin is None:
            self._origin = t
            self._next_tick = 1
            return True
        ticks = (t - self._origin) / self._period
        if ticks + _EPS < self._next_tick:
            return False
        # After a gap, skip the ticks already passed instead of taking a burst of frames.
        self._next_tick = math.floor(ticks + _EPS) + 1
        return True

"""`auto` counting: boxes while they are reliable, the density map once the zone is crowded.

Detectors are exact for a few people and undercount in crowds (occlusion, tiny heads); the
density model holds in crowds but invents people in empty scenes. The switch looks at what
the active method sees, with hysteresis and a minimum dwell so that it does not flap:

    detector ──(boxes ≥ to_density_count, or ≥ to_detector_count boxes that are small)──► density
    density  ──(density count < to_detector_count)──────────────────────────────────────► detector
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from crowdwatch.core.types import Detections

Mode = Literal["detector", "density"]


@dataclass(frozen=True, slots=True)
class AutoParams:
    to_density_count: float = 15
    to_detector_count: float = 8
    small_person_px: float = 28
    min_dwell_s: float = 10

    def __post_init__(self) -> None:
        if self.to_detector_count >= self.to_density_count:
            raise ValueError("to_detector_count must be below to_density_count (hysteresis)")


class AutoSwitch:
    def __init__(self, params: AutoParams) -> None:
        self.params = params
        self.mode: Mode = "detector"
        self._since: float | None = None

    def _may_switch(self, now: float) -> bool:
        return self._since is None or now - self._since >= self.params.min_dwell_s

    def _switch(self, mode: Mode, now: float) -> None:
        self.mode, self._since = mode, now

    def before_density(self, now: float, in_zone: Detections) -> Mode:
        """Decide this frame's mode from the boxes in the zone (before any density map is
        computed, so density runs only where needed)."""
        p = self.params
        if self.mode == "detector" and self._may_switch(now):
            n = len(in_zone)
            small = n > 0 and float(np.median(in_zone.heights())) < p.small_person_px
            if n >= p.to_density_count or (small and n >= p.to_detector_count):
                self._switch("density", now)
        return self.mode

    def after_density(self, now: float, density_count: float) -> None:
        if self.mode == "density" and density_count < self.params.to_detector_count and self._may_switch(now):
            self._switch("detector", now)

"""`auto` counting: boxes while they are reliable, the density map once the zone is crowded.

Detectors are exact for a few people and undercount in crowds (occlusion, tiny heads); the
density model holds in crowds but invents people in empty scenes. The switch looks at what
the active method sees, with hysteresis and a minimum dwell so that it does not flap:

    detector ──(boxes ≥ to_density_count, or ≥ to_detector_count boxes that are small)──► density
    detector ──(probe: density ≥ to_density_count and ≥ probe_ratio × boxes)─────────────► density
    density  ──(density count < to_detector_count)──────────────────────────────────────► detector

The probe is for crowds the detector barely sees at all (heads without bodies, far away): a
street of 300 people may give it 9 boxes, which no box rule can tell from 9 passers-by. While
counting by boxes, the density map is also computed every `probe_every_s` (and whenever the
frame has one anyway); when it counts far more than the boxes, the boxes are not to be trusted.

When the two disagree the other way (many boxes, a near-empty map: big, near people that the
density model was not trained on), the first rule and the last would take turns every dwell and
the count would swing between them. So once the map has sent the zone back to boxes, the box
rule waits until the boxes have fallen below `to_detector_count` (a new scene) or a probe
counts at least `to_detector_count` (the map sees people again): the boxes are trusted meanwhile.
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
    probe_every_s: float | None = 60
    """Density check while on boxes: this often (0 = every frame; None = never)."""
    probe_ratio: float = 2

    def __post_init__(self) -> None:
        if self.to_detector_count >= self.to_density_count:
            raise ValueError("to_detector_count must be below to_density_count (hysteresis)")
        if self.probe_every_s is not None and self.probe_every_s < 0:
            raise ValueError("probe_every_s must not be negative")
        if self.probe_ratio < 1:
            raise ValueError("probe_ratio must be at least 1")


class AutoSwitch:
    def __init__(self, params: AutoParams) -> None:
        self.params = params
        self.mode: Mode = "detector"
        self._since: float | None = None
        self._last_probe: float | None = None
        self._map_said_sparse = False  # the map sent the zone back to boxes (see the module doc)

    def _may_switch(self, now: float) -> bool:
        return self._since is None or now - self._since >= self.params.min_dwell_s

    def _switch(self, mode: Mode, now: float) -> None:
        self.mode, self._since = mode, now

    def before_density(self, now: float, in_zone: Detections) -> Mode:
        """Decide this frame's mode from the boxes in the zone (before any density map is
        computed, so density runs only where needed)."""
        p = self.params
        n = len(in_zone)
        if n < p.to_detector_count:
            self._map_said_sparse = False
        if self.mode == "detector" and self._may_switch(now) and not self._map_said_sparse:
            small = n > 0 and float(np.median(in_zone.heights())) < p.small_person_px
            if n >= p.to_density_count or (small and n >= p.to_detector_count):
                self._switch("density", now)
        return self.mode

    def probe_due(self, now: float) -> bool:
        """Whether this frame, counted by boxes, should also get a density map to check them."""
        every = self.params.probe_every_s
        if self.mode != "detector" or every is None or not self._may_switch(now):
            return False
        return self._last_probe is None or now - self._last_probe >= every

    def after_probe(self, now: float, density_count: float, boxes: int) -> Mode:
        """A density count of the zone while on boxes (a due probe, or a map the frame had
        anyway): switch when it reaches the crowd threshold and the boxes are a small part of it."""
        p = self.params
        if self.mode != "detector" or p.probe_every_s is None or not self._may_switch(now):
            return self.mode  # a map within the dwell is no probe: the next one stays due
        self._last_probe = now
        if density_count >= p.to_detector_count:
            self._map_said_sparse = False
        if density_count >= p.to_density_count and density_count >= p.probe_ratio * boxes:
            self._switch("density", now)
        return self.mode

    def after_density(self, now: float, density_count: float) -> None:
        if self.mode == "density" and density_count < self.params.to_detector_count and self._may_switch(now):
            self._switch("detector", now)
            self._map_said_sparse = True

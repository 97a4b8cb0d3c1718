"""Per-camera analysis: detections -> zone counts -> smoothed counts -> gathering events."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from crowdwatch.core.crowd import GatheringRules, GatheringTracker, Phase, ZoneIdentity
from crowdwatch.core.smoothing import Smoother
from crowdwatch.core.types import CountMethod, CrowdEvent, Detections, GeoPoint, ZoneCount
from crowdwatch.core.zones import Zone


@dataclass(frozen=True, slots=True)
class ZoneState:
    """What the operator sees for one zone right now."""

    camera_id: str
    zone_id: str
    raw_count: float
    count: float
    density_per_m2: float | None
    method: CountMethod
    phase: Phase
    ts: float


@dataclass(frozen=True, slots=True)
class AnalysisResult:
    counts: tuple[ZoneCount, ...]
    states: tuple[ZoneState, ...]
    events: tuple[CrowdEvent, ...]


class _ZoneLane:
    def __init__(self, zone: Zone, smoother: Smoother, tracker: GatheringTracker) -> None:
        self.zone = zone
        self.smoother = smoother
        self.tracker = tracker


class CameraAnalysis:
    """Owns the zones of one camera with their smoothers and gathering trackers."""

    def __init__(
        self,
        camera_id: str,
        location: GeoPoint,
        zones: Sequence[tuple[Zone, GatheringRules]],
        smoother_factory: Callable[[], Smoother],
    ) -> None:
        self.camera_id = camera_id
        self._lanes = [
            _ZoneLane(
                zone,
                smoother_factory(),
                GatheringTracker(ZoneIdentity(camera_id, zone.zone_id, location), rules),
            )
            for zone, rules in zones
        ]

    @property
    def zone_ids(self) -> list[str]:
        return [lane.zone.zone_id for lane in self._lanes]

    def update(self, ts: float, detections: Detections, model: str) -> AnalysisResult:
        counts: list[ZoneCount] = []
        states: list[ZoneState] = []
        events: list[CrowdEvent] = []
        for lane in self._lanes:
            raw = float(lane.zone.count(detections))
            smoothed = lane.smoother.update(raw)
            density = lane.zone.density(smoothed)
            zc = ZoneCount(self.camera_id, lane.zone.zone_id, ts, smoothed, density, "detector")
            counts.append(zc)
            events.extend(lane.tracker.observe(zc, model))
            states.append(
                ZoneState(
                    self.camera_id,
                    lane.zone.zone_id,
                    raw,
                    smoothed,
                    density,
                    "detector",
                    lane.tracker.phase,
                    ts,
                )
            )
        return AnalysisResult(tuple(counts), tuple(states), tuple(events))

"""Event builders and a routing function for the store tests (kept here so that this package
stands alone)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from crowdwatch.core.routing import RouteDecision
from crowdwatch.core.types import CameraStatusEvent, CrowdEvent, EventType, GeoPoint, Severity

T0 = 1_700_000_000.0


def crowd_event(type: EventType = EventType.GATHERING_STARTED, seq: int = 0, **changes: Any) -> CrowdEvent:
    base = CrowdEvent(
        type=type,
        camera_id="cam-1",
        zone_id="gate",
        ts=T0 + seq,
        seq=seq,
        episode_start=T0,
        location=GeoPoint(lat=31.21, lon=121.41),
        count=35.0,
        density_per_m2=None,
        peak=35.0,
        rise_per_min=3.0,
        severity=Severity.MEDIUM,
        trigger="count>=30",
        method="detector",
        model="yolov8s",
    )
    return replace(base, **changes)


def camera_event(
    type: EventType = EventType.CAMERA_OFFLINE, ts: float = T0, **changes: Any
) -> CameraStatusEvent:
    return replace(
        CameraStatusEvent(type=type, camera_id="cam-1", ts=ts, reason="no frames for 20 s"), **changes
    )


@dataclass
class Decide:
    """A routing function that counts its calls."""

    center: str = "c1"
    sla_s: float = 120.0
    calls: list[str] = field(default_factory=list)

    def __call__(self, event: CrowdEvent) -> RouteDecision:
        self.calls.append(event.id)
        return RouteDecision(self.center, "inside:community", self.sla_s)

"""Crowd and camera-status events with sensible defaults, for every test package: each test
changes only the fields it is about (`crowd_event(seq=3, count=50.0)`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from crowdwatch.core.types import CameraStatusEvent, CrowdEvent, EventType, GeoPoint, Severity

T0 = 1_700_000_000.0


def crowd_event(type: EventType = EventType.GATHERING_STARTED, seq: int = 0, **changes: Any) -> CrowdEvent:
    """Camera cam-1, zone gate, episode started at T0, event `seq` seconds later."""
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

"""Encode events as CloudEvents and put them on the bus, keyed by camera (order per camera)."""

from __future__ import annotations

from crowdwatch.bus.base import CAMERA_STATUS, CROWD_EVENTS, EventBus
from crowdwatch.core import codec
from crowdwatch.core.types import CameraStatusEvent, CrowdEvent


class EventPublisher:
    def __init__(self, bus: EventBus) -> None:
        self._bus = bus

    def crowd(self, event: CrowdEvent) -> None:
        self._bus.publish(CROWD_EVENTS, event.camera_id, codec.encode(event))

    def camera(self, event: CameraStatusEvent) -> None:
        self._bus.publish(CAMERA_STATUS, event.camera_id, codec.encode(event))

"""A thread-safe snapshot of what every camera and zone is doing, for live views."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from crowdwatch.core.analysis import ZoneState
from crowdwatch.core.types import CameraStatusEvent, EventType


@dataclass(frozen=True, slots=True)
class CameraView:
    camera_id: str
    name: str
    status: str  # starting | online | offline | degraded | ended
    reason: str = ""
    decode_fps: float = 0.0
    analysed: int = 0
    stale_dropped: int = 0
    decode_errors: int = 0
    detect_ms: float = 0.0


class LiveState:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cameras: dict[str, CameraView] = {}
        self._zones: dict[tuple[str, str], ZoneState] = {}

    def add_camera(self, camera_id: str, name: str) -> None:
        with self._lock:
            if camera_id not in self._cameras:
                self._cameras[camera_id] = CameraView(camera_id, name or camera_id, "starting")

    def remove_camera(self, camera_id: str) -> None:
        with self._lock:
            self._cameras.pop(camera_id, None)
            for key in [k for k in self._zones if k[0] == camera_id]:
                del self._zones[key]

    def status_of(self, camera_id: str) -> str:
        with self._lock:
            view = self._cameras.get(camera_id)
            return view.status if view is not None else ""

    def camera_status(self, event: CameraStatusEvent) -> None:
        status = {
            EventType.CAMERA_OFFLINE: "offline",
            EventType.CAMERA_ONLINE: "online",
            EventType.CAMERA_DEGRADED: "degraded",
        }[event.type]
        self.update_camera(event.camera_id, status=status, reason=event.reason)

    def update_camera(self, camera_id: str, **changes: object) -> None:
        with self._lock:
            view = self._cameras.get(camera_id)
            if view is not None:
                self._cameras[camera_id] = replace(view, **changes)  # type: ignore[arg-type]

    def update_zones(self, states: tuple[ZoneState, ...]) -> None:
        with self._lock:
            for s in states:
                # A camera removed meanwhile (its last frame finished after the removal) must
                # not come back as rows nobody updates.
                if s.camera_id in self._cameras:
                    self._zones[(s.camera_id, s.zone_id)] = s

    def cameras(self) -> list[CameraView]:
        with self._lock:
            return list(self._cameras.values())

    def zones(self) -> list[ZoneState]:
        with self._lock:
            return [self._zones[k] for k in sorted(self._zones)]

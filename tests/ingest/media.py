"""Builders for the ingest tests: small videos whose frames say their own index, configs,
a status-event recorder and a deadline poll."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from crowdwatch.config.camera import CameraConfig
from crowdwatch.core.types import CameraStatusEvent, EventType

WIDTH, HEIGHT = 160, 120
_BITS = 8
_STRIPE = WIDTH // _BITS


def frame_image(index: int, width: int = WIDTH, height: int = HEIGHT) -> npt.NDArray[np.uint8]:
    """Black/white vertical stripes spelling `index` in binary: survives lossy codecs."""
    image = np.zeros((height, width, 3), np.uint8)
    stripe = width // _BITS
    for bit in range(_BITS):
        if index >> bit & 1:
            image[:, bit * stripe : (bit + 1) * stripe] = 255
    return image


def frame_index(image: npt.NDArray[np.uint8]) -> int:
    stripe = image.shape[1] // _BITS
    # Read the middle of each stripe: codec ringing lives at the edges.
    return sum(
        1 << bit for bit in range(_BITS) if image[:, bit * stripe + 3 : (bit + 1) * stripe - 3].mean() > 127
    )


def make_video(path: Path, frames: int = 40, fps: float = 10.0) -> Path:
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, (WIDTH, HEIGHT))
    assert writer.isOpened(), f"cannot write {path}"
    for i in range(frames):
        writer.write(frame_image(i))
    writer.release()
    return path


def camera(url: str, **overrides: Any) -> CameraConfig:
    fields: dict[str, Any] = {
        "id": "cam-1",
        "url": url,
        "location": {"lat": 52.0, "lon": 4.0},
        "zones": [{"id": "z", "polygon": [(0, 0), (10, 0), (10, 10)]}],
        "reconnect": {"initial_s": 0.05, "max_s": 0.1, "multiplier": 2.0, "jitter": 0.1},
    }
    fields.update(overrides)
    return CameraConfig.model_validate(fields)


class Recorder:
    """Collects status events from the reader thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[CameraStatusEvent] = []

    def __call__(self, event: CameraStatusEvent) -> None:
        with self._lock:
            self._events.append(event)

    @property
    def events(self) -> list[CameraStatusEvent]:
        with self._lock:
            return list(self._events)

    def types(self) -> list[EventType]:
        return [e.type for e in self.events]

    def count(self, type_: EventType) -> int:
        return self.types().count(type_)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll `condition` until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)

"""Scripted stand-ins for the camera and the model, so the wiring is tested without video."""

from __future__ import annotations

import threading
from collections import deque

import numpy as np
import numpy.typing as npt

from crowdwatch.core.types import Detections, Frame
from crowdwatch.ingest.base import SourceStats, StatusCallback


class ScriptedSource:
    """Delivers `n` frames at `step` seconds of video time, then ends."""

    def __init__(self, camera_id: str, n: int, step: float = 1.0, t0: float = 1_800_000_000.0) -> None:
        self.camera_id = camera_id
        self._frames = deque(
            Frame(camera_id, i, t0 + i * step, i * step, np.full((200, 400, 3), i % 256, np.uint8))
            for i in range(n)
        )
        self._lock = threading.Lock()
        self.taken = 0

    def start(self) -> None:
        pass

    def read(self, timeout: float) -> Frame | None:
        with self._lock:
            if not self._frames:
                return None
            self.taken += 1
            return self._frames.popleft()

    @property
    def ended(self) -> bool:
        return not self._frames

    def stats(self) -> SourceStats:
        return SourceStats(True, 10.0, self.taken, self.taken, 0, 0, 0, None)

    def close(self) -> None:
        pass


class CountingDetector:
    """Returns `counts[frame value]` people standing at x=100 (frame value = frame index)."""

    name = "fake-detector"

    def __init__(self, counts: list[int], fail_on: set[int] | None = None) -> None:
        self.counts = counts
        self.fail_on = fail_on or set()
        self.closed = False

    def detect(self, image: npt.NDArray[np.uint8]) -> Detections:
        i = int(image[0, 0, 0])
        if i in self.fail_on:
            raise RuntimeError(f"model crashed on frame {i}")
        n = self.counts[i]
        xyxy = np.array([[90 + j, 60, 110 + j, 150] for j in range(n)], np.float32).reshape(-1, 4)
        return Detections(xyxy, np.full(n, 0.9, np.float32), np.zeros(n, np.int32))

    def close(self) -> None:
        self.closed = True


def scripted_factory(sources: dict[str, ScriptedSource]):  # type: ignore[no-untyped-def]
    def factory(cam, on_status: StatusCallback):  # type: ignore[no-untyped-def]
        return sources[cam.id]

    return factory

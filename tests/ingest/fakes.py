"""A scripted stand-in for an OpenCV capture, for faults a real file cannot produce on demand."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Union

import numpy as np
import numpy.typing as npt

from crowdwatch.config.camera import CameraConfig
from crowdwatch.ingest.capture import Capture, SourceOpenError

from .media import frame_image

Image = npt.NDArray[np.uint8]
# One scripted read: a frame index (a good frame), an exception to raise, or a raw (ok, image).
Step = Union[int, BaseException, tuple[bool, "Image | None"]]  # noqa: UP007

BAD_READ: Step = (False, None)
EMPTY: Step = (True, np.zeros((0, 0, 3), np.uint8))
GRAY: Step = (True, np.zeros((120, 160), np.uint8))
WRONG_SIZE: Step = (True, np.zeros((60, 80, 3), np.uint8))


class FakeCapture:
    def __init__(self, steps: Iterator[Step], *, open_after: bool = False) -> None:
        self._steps = steps
        self._open = True
        self._open_after = open_after  # stay "open" after the script, reads failing (a hung stream)

    def read(self) -> tuple[bool, Image | None]:
        time.sleep(0.001)  # a camera does not deliver infinitely fast; keeps the CPU free
        step = next(self._steps, None)
        if step is None:
            self._open = self._open_after
            return False, None
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, int):
            return True, frame_image(step)
        return step

    def is_open(self) -> bool:
        return self._open

    def fps(self) -> float | None:
        return None

    def frame_count(self) -> int | None:
        return None

    def position(self) -> int | None:
        return None

    def release(self) -> None:
        self._open = False


class FakeCamera:
    """A capture factory that hands out one scripted capture per open; an exception in the
    list is raised by the open instead. After the list, every open fails."""

    def __init__(self, opens: list[FakeCapture | Exception]) -> None:
        self._opens = list(opens)
        self._lock = threading.Lock()
        self.open_calls = 0

    def plug_in(self, capture: FakeCapture) -> None:
        with self._lock:
            self._opens.append(capture)

    def __call__(self, config: CameraConfig) -> Capture:
        with self._lock:
            self.open_calls += 1
            item = self._opens.pop(0) if self._opens else SourceOpenError("cannot open source: refused")
        if isinstance(item, Exception):
            raise item
        return item


def script(*parts: list[Step]) -> Iterator[Step]:
    return iter([step for part in parts for step in part])


def good(n: int, start: int = 0) -> list[Step]:
    return list(range(start, start + n))


def forever(step: Callable[[], Step]) -> Iterator[Step]:
    while True:
        yield step()

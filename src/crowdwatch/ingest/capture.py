"""Opening a video source with OpenCV behind a small interface that tests can fake."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import numpy as np
import numpy.typing as npt

from crowdwatch.config.camera import CameraConfig
from crowdwatch.core.redact import redact_url


class SourceOpenError(Exception):
    """The source could not be opened. The message is safe to log (redacted)."""


class Capture(Protocol):
    def read(self) -> tuple[bool, npt.NDArray[np.uint8] | None]:
        """(False, None) when no frame could be read; the image is not yet checked."""

    def is_open(self) -> bool: ...

    def fps(self) -> float | None:
        """The container's frame rate, None when unknown."""

    def frame_count(self) -> int | None:
        """Frames in a file, None when unknown (streams)."""

    def position(self) -> int | None:
        """Index of the next frame in a file, None when unknown."""

    def release(self) -> None: ...


CaptureFactory = Callable[[CameraConfig], Capture]


def file_path(url: str) -> str:
    """The local path of a file source: a file:// URL or a plain path."""
    if not url.lower().startswith("file://"):
        return url
    parts = urlsplit(url)
    path = url2pathname(unquote(parts.path))
    # file://host/path names a host other than localhost only on network shares.
    if parts.netloc and parts.netloc.lower() != "localhost":
        return f"//{parts.netloc}{path}"
    return path


class _Cv2Capture:
    def __init__(self, cap: Any) -> None:
        self._cap = cap

    def read(self) -> tuple[bool, npt.NDArray[np.uint8] | None]:
        ok, image = self._cap.read()
        return bool(ok), image

    def is_open(self) -> bool:
        return bool(self._cap.isOpened())

    def fps(self) -> float | None:
        return _positive(self._cap.get(_cv2().CAP_PROP_FPS))

    def frame_count(self) -> int | None:
        n = _positive(self._cap.get(_cv2().CAP_PROP_FRAME_COUNT))
        return None if n is None else round(n)

    def position(self) -> int | None:
        pos = self._cap.get(_cv2().CAP_PROP_POS_FRAMES)
        return round(pos) if math.isfinite(pos) and pos >= 0 else None

    def release(self) -> None:
        self._cap.release()


def open_capture(config: CameraConfig) -> Capture:
    """Open `config.url` with OpenCV's FFmpeg backend, with timeouts for streams (DESIGN 8).

    Raises SourceOpenError with a redacted reason."""
    cv2 = _cv2()
    if config.kind == "file":
        path = file_path(config.url)
        if not os.path.exists(path):
            raise SourceOpenError(f"cannot open source: no such file {redact_url(path)}")
        if not os.path.isfile(path):
            raise SourceOpenError(f"cannot open source: not a regular file {redact_url(path)}")
        cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
        what = "not a readable video"
    else:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            round(config.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            round(config.read_timeout_s * 1000),
        ]
        cap = cv2.VideoCapture(config.url, cv2.CAP_FFMPEG, params)
        what = "no answer, refused or not a video stream"
    if not cap.isOpened():
        cap.release()
        raise SourceOpenError(f"cannot open source: {what}: {redact_url(config.url)}")
    return _Cv2Capture(cap)


def _positive(value: float) -> float | None:
    return value if math.isfinite(value) and value > 0 else None


def _cv2() -> Any:
    # Imported on first use so that importing crowdwatch.ingest stays cheap and free of I/O.
    import cv2

    return cv2

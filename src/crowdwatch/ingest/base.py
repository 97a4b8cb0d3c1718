"""What every video source offers the worker: sampled frames, an end flag, counters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from crowdwatch.core.types import CameraStatusEvent, Frame

# Called from the source's reader thread; it must be quick and must not block.
StatusCallback = Callable[[CameraStatusEvent], None]


@dataclass(frozen=True, slots=True)
class SourceStats:
    """A snapshot of one source's counters (for metrics and the console)."""

    online: bool
    fps: float  # measured decode rate over the last frames, 0 when nothing flows
    frames_decoded: int
    frames_delivered: int  # handed to the consumer by read()
    frames_dropped_stale: int  # sampled, then replaced by a newer frame before read() took it
    decode_errors: int
    reconnects: int
    last_error: str | None  # already redacted
    degraded: bool = False  # more than half of the recent reads failed (see ingest.health)


@runtime_checkable
class Source(Protocol):
    camera_id: str

    def start(self) -> None:
        """Start reading in the background; returns at once."""

    def read(self, timeout: float) -> Frame | None:
        """The newest sampled frame not yet returned, or None after `timeout` seconds
        (at once when the source has ended or is closed)."""

    @property
    def ended(self) -> bool:
        """A non-looping file finished and its last frame was taken: nothing more will come."""

    def stats(self) -> SourceStats: ...

    def close(self) -> None:
        """Stop the reader and join it. Idempotent."""

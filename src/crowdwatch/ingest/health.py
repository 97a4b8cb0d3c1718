"""When to say a camera is offline, online again or degraded. Pure: times are passed in.

Decisions:
- `camera.offline` once per outage: at once when the source has never delivered a frame and
  an attempt fails (the first open, typically), otherwise `offline_after_s` after the last
  good frame.
- `camera.online` only after an offline report: a healthy start is not news.
- `camera.degraded` once per spell, when more than half of the last `window` reads of an
  open capture failed. It is judged when a good frame arrives, so a capture that died (every
  read failing) is reported as offline, not degraded. The spell ends, with hysteresis, when
  at most a quarter of the window failed, or with an offline report.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from crowdwatch.core.types import EventType


@dataclass(frozen=True, slots=True)
class StatusChange:
    type: EventType
    reason: str


class Health:
    def __init__(
        self,
        offline_after_s: float,
        *,
        window: int = 20,
        degraded_above: float = 0.5,
        recovered_at: float = 0.25,
    ) -> None:
        self._offline_after = offline_after_s
        self._window: deque[bool] = deque(maxlen=window)  # True = a read failed
        self._degraded_above = degraded_above
        self._recovered_at = recovered_at
        self.online = False
        self._last_frame: float | None = None
        self._last_error: str | None = None
        self._offline_since: float | None = None  # set while an outage has been reported
        self._degraded = False

    @property
    def offline_reported(self) -> bool:
        return self._offline_since is not None

    @property
    def degraded(self) -> bool:
        """In a degraded spell (reported by `camera.degraded`; it ends without an event)."""
        return self._degraded

    def opened(self) -> None:
        """A new capture: its read history starts afresh."""
        self._window.clear()

    def frame(self, now: float) -> list[StatusChange]:
        self.online = True
        self._last_frame = now
        self._window.append(False)
        changes: list[StatusChange] = []
        if self._offline_since is not None:
            changes.append(
                StatusChange(
                    EventType.CAMERA_ONLINE, f"frames flowing again after {now - self._offline_since:.0f} s"
                )
            )
            self._offline_since = None
        failed = sum(self._window)
        full = len(self._window) == self._window.maxlen
        if full and not self._degraded and failed > self._degraded_above * len(self._window):
            self._degraded = True
            changes.append(
                StatusChange(
                    EventType.CAMERA_DEGRADED, f"{failed} of the last {len(self._window)} reads failed"
                )
            )
        elif self._degraded and failed <= self._recovered_at * len(self._window):
            self._degraded = False
        return changes

    def touch(self, now: float) -> None:
        """The reader was busy with a good frame until `now` (waiting for a slow consumer):
        that time is not an outage."""
        if self._last_frame is not None:
            self._last_frame = max(self._last_frame, now)

    def decode_error(self) -> None:
        self._window.append(True)

    def failed(self, now: float, reason: str) -> list[StatusChange]:
        """The capture could not be opened or was lost."""
        self.online = False
        self._last_error = reason
        if self._last_frame is None and self._offline_since is None:
            return [self._go_offline(now, reason)]
        return self.tick(now)

    def tick(self, now: float) -> list[StatusChange]:
        """Report the outage once `offline_after_s` has passed since the last frame."""
        deadline = self.offline_deadline()
        if deadline is None or now < deadline:
            return []
        reason = f"no frame for {self._offline_after:g} s"
        if self._last_error:
            reason += f" ({self._last_error})"
        return [self._go_offline(now, reason)]

    def offline_deadline(self) -> float | None:
        """When `tick` will report the outage; None when there is nothing to report."""
        if self._offline_since is not None or self._last_frame is None:
            return None
        return self._last_frame + self._offline_after

    def _go_offline(self, now: float, reason: str) -> StatusChange:
        self.online = False
        self._offline_since = now
        self._degraded = False
        return StatusChange(EventType.CAMERA_OFFLINE, reason)

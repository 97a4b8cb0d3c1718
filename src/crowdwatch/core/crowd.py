"""The gathering state machine of one zone (DESIGN 4). Pure: time comes in with each sample.

    idle ──enter held min_duration (or fast rise)──► active ──exit held clear_after──► cooldown
      ▲  ◄──────enter condition lost─── pending                                         │
      └────────────────────────────────────────────────────────────── cooldown over ────┘

While active: `updated` at most every `update_every_s`, and at once when severity rises.
A severity drop waits for the next periodic update, so a count wobbling around a band edge
does not page anyone twice a second.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from crowdwatch.core.severity import FRUIN_DENSITY_BANDS, SeverityBands, count_bands_for
from crowdwatch.core.types import CrowdEvent, EventType, GeoPoint, Severity, ZoneCount


@dataclass(frozen=True, slots=True)
class GatheringRules:
    enter_count: float
    exit_count: float
    min_duration_s: float
    clear_after_s: float
    update_every_s: float
    cooldown_s: float
    enter_density: float | None = None
    exit_density: float | None = None
    rise_per_min: float | None = None
    rise_window_s: float = 30.0
    count_bands: SeverityBands | None = None
    density_bands: SeverityBands = FRUIN_DENSITY_BANDS

    def __post_init__(self) -> None:
        # A gathering ends when the count (density) falls below exit_count (exit_density): at 0
        # or below that never happens, and the gathering would last forever.
        if not self.exit_count > 0:
            raise ValueError(f"exit_count must be above 0, got {self.exit_count}")
        if self.exit_density is not None and not self.exit_density > 0:
            raise ValueError(f"exit_density must be above 0, got {self.exit_density}")
        if self.exit_count >= self.enter_count:
            raise ValueError("exit_count must be below enter_count (hysteresis)")
        if (
            self.enter_density is not None
            and self.exit_density is not None
            and self.exit_density >= self.enter_density
        ):
            raise ValueError("exit_density must be below enter_density (hysteresis)")
        if self.enter_density is not None and self.exit_density is None:
            # Same default as the config (rules.exit_density). Without it, a gathering that
            # entered on density alone would start clearing at once whenever its count is
            # below exit_count, and flap between episodes.
            object.__setattr__(self, "exit_density", 0.7 * self.enter_density)
        if self.count_bands is None:
            object.__setattr__(self, "count_bands", count_bands_for(self.enter_count))

    def severity(self, count: float, density: float | None) -> Severity:
        if density is not None:
            return self.density_bands.classify(density)
        assert self.count_bands is not None
        return self.count_bands.classify(count)


class Phase(StrEnum):
    IDLE = "idle"
    PENDING = "pending"
    ACTIVE = "active"
    CLEARING = "clearing"
    COOLDOWN = "cooldown"


@dataclass(frozen=True, slots=True)
class ZoneIdentity:
    camera_id: str
    zone_id: str
    location: GeoPoint


class GatheringTracker:
    """Feed it smoothed zone counts in time order; it returns the events to publish."""

    def __init__(self, zone: ZoneIdentity, rules: GatheringRules) -> None:
        self.zone = zone
        self.rules = rules
        self.phase = Phase.IDLE
        self._since = 0.0  # start of the current pending/clearing spell, or end of cooldown
        self._episode_start = 0.0
        self._seq = 0
        self._peak = 0.0
        self._trigger = ""
        self._severity = Severity.LOW
        self._last_emit = 0.0
        self._history: deque[tuple[float, float]] = deque()

    @property
    def severity(self) -> Severity | None:
        return self._severity if self.phase in (Phase.ACTIVE, Phase.CLEARING) else None

    def observe(self, sample: ZoneCount, model: str, now: float | None = None) -> list[CrowdEvent]:
        """`now`: the sample's time on the clock that intervals are measured on (monotonic in
        a worker; `sample.ts` when not given). Events are stamped with `sample.ts`."""
        now = sample.ts if now is None else now
        events = self._observe(sample, model, now)
        if events:
            self._last_emit = now
        return events

    def _observe(self, sample: ZoneCount, model: str, now: float) -> list[CrowdEvent]:
        count, density = sample.count, sample.density_per_m2
        r = self.rules
        rise = self._rise_per_min(now, count)
        trigger = self._enter_trigger(count, density)
        # A rise only counts with at least exit_count present, or the new gathering would
        # start clearing on the very next sample.
        fast = r.rise_per_min is not None and rise >= r.rise_per_min and count >= r.exit_count
        rise_trigger = "" if r.rise_per_min is None else f"rise>={r.rise_per_min:g}/min"

        if self.phase is Phase.COOLDOWN:
            if now < self._since:
                return []
            self.phase = Phase.IDLE

        if self.phase is Phase.IDLE:
            if fast:
                return [self._start(sample, model, rise, rise_trigger)]
            if trigger is None:
                return []
            self.phase, self._since = Phase.PENDING, now

        if self.phase is Phase.PENDING:
            if trigger is not None and now - self._since >= r.min_duration_s:
                return [self._start(sample, model, rise, trigger)]
            if fast:
                return [self._start(sample, model, rise, rise_trigger)]
            if trigger is None:
                self.phase = Phase.IDLE
            return []

        self._peak = max(self._peak, count)
        if self.phase is Phase.ACTIVE and self._exit_condition(count, density):
            self.phase, self._since = Phase.CLEARING, now
        elif self.phase is Phase.CLEARING and not self._exit_condition(count, density):
            self.phase = Phase.ACTIVE

        if self.phase is Phase.CLEARING and now - self._since >= r.clear_after_s:
            event = self._event(EventType.GATHERING_ENDED, sample, model, rise)
            self.phase, self._since = Phase.COOLDOWN, now + r.cooldown_s
            return [event]

        severity = r.severity(count, density)
        if severity > self._severity:
            self._severity = severity
            return [self._event(EventType.GATHERING_UPDATED, sample, model, rise)]
        if now - self._last_emit >= r.update_every_s:
            self._severity = severity
            return [self._event(EventType.GATHERING_UPDATED, sample, model, rise)]
        return []

    # -- conditions --------------------------------------------------------------------------

    def _enter_trigger(self, count: float, density: float | None) -> str | None:
        r = self.rules
        if r.enter_density is not None and density is not None and density >= r.enter_density:
            return f"density>={r.enter_density:g}/m2"
        if count >= r.enter_count:
            return f"count>={r.enter_count:g}"
        return None

    def _exit_condition(self, count: float, density: float | None) -> bool:
        r = self.rules
        below_count = count < r.exit_count
        if density is None or r.exit_density is None:
            return below_count
        return below_count and density < r.exit_density

    def _rise_per_min(self, now: float, count: float) -> float:
        window = self.rules.rise_window_s
        self._history.append((now, count))
        while self._history and now - self._history[0][0] > window:
            self._history.popleft()
        t0, c0 = self._history[0]
        # Too short a baseline makes any two-sample jitter look like a stampede.
        if now - t0 < window / 2:
            return 0.0
        return (count - c0) / ((now - t0) / 60.0)

    # -- events ------------------------------------------------------------------------------

    def _start(self, sample: ZoneCount, model: str, rise: float, trigger: str) -> CrowdEvent:
        self.phase = Phase.ACTIVE
        self._episode_start = sample.ts
        self._seq = 0
        self._peak = sample.count
        self._trigger = trigger
        self._severity = self.rules.severity(sample.count, sample.density_per_m2)
        return self._event(EventType.GATHERING_STARTED, sample, model, rise)

    def _event(self, kind: EventType, sample: ZoneCount, model: str, rise: float) -> CrowdEvent:
        event = CrowdEvent(
            type=kind,
            camera_id=self.zone.camera_id,
            zone_id=self.zone.zone_id,
            ts=sample.ts,
            seq=self._seq,
            episode_start=self._episode_start,
            location=self.zone.location,
            count=round(sample.count, 2),
            density_per_m2=None if sample.density_per_m2 is None else round(sample.density_per_m2, 3),
            peak=round(max(self._peak, sample.count), 2),
            rise_per_min=round(rise, 2),
            severity=self._severity,
            trigger=self._trigger,
            method=sample.method,
            model=model,
        )
        self._seq += 1
        return event

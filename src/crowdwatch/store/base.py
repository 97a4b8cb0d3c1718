"""The alert store seam (DESIGN 1, 5, 6). Every method is one atomic step, so a Redis
implementation can map each onto one transaction (WATCH/MULTI or a Lua script) and several
alerting workers can share one store."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from crowdwatch.core.alerts import Action, AlertChange, ChangeKind, InvalidTransition
from crowdwatch.core.routing import RouteDecision
from crowdwatch.core.types import Alert, AuditEntry, CameraStatusEvent, CrowdEvent

__all__ = [
    "Action",
    "AlertChange",
    "AlertNotFoundError",
    "AlertStore",
    "BatchApplyError",
    "ChangeKind",
    "InvalidTransition",
    "Listener",
    "PendingEvents",
    "RouteFn",
    "StoreUpdate",
    "applied_now",
    "apply_each",
]

RouteFn = Callable[[CrowdEvent], RouteDecision]
# What listeners receive: alert changes, and camera status so a console can show cameras offline.
StoreUpdate = AlertChange | CameraStatusEvent
Listener = Callable[[StoreUpdate], None]


class AlertNotFoundError(KeyError):
    def __init__(self, alert_id: str) -> None:
        super().__init__(alert_id)
        self.alert_id = alert_id

    def __str__(self) -> str:
        return f"no alert '{self.alert_id}'"


class BatchApplyError(Exception):
    """`apply_events` stopped at one event: the events before it are stored and `applied`
    holds their results; that event and the ones after it are not stored. `cause` is what
    went wrong (also chained as `__cause__`)."""

    def __init__(self, applied: list[AlertChange | None], cause: Exception) -> None:
        super().__init__(f"stored {len(applied)} event(s) of the batch, then: {cause}")
        self.applied = applied
        self.cause = cause


class PendingEvents(Protocol):
    """A batch handed to `AlertStore.submit_events`."""

    def result(self) -> list[AlertChange | None]:
        """Wait until the batch is stored; what `apply_events` returns or raises. Call it exactly
        once: it releases what the batch holds (a Redis connection)."""
        ...


class AlertStore(Protocol):
    def apply_event(self, event: CrowdEvent, decide: RouteFn, now: float) -> AlertChange | None:
        """Create the episode's alert (routing it with `decide`, called only then) or fold the
        event into it. None when nothing changed: the event id was applied before, or the event
        is older than the alert's last one. Safe to call again with a redelivered event."""
        ...

    def apply_events(
        self, events: Sequence[CrowdEvent], decide: RouteFn, now: float
    ) -> list[AlertChange | None]:
        """`apply_event` for each event in order, with the same results (an event repeated in
        the batch, or older than one before it, changes nothing the second time), in as few
        round trips as the store can. When one fails, raises BatchApplyError: what came before
        it is stored, it and the rest are not, so the caller can retry from there."""
        ...

    def submit_events(self, events: Sequence[CrowdEvent], decide: RouteFn, now: float) -> PendingEvents:
        """`apply_events` in two halves: start storing the batch, and return before the store
        has confirmed it, so the caller can work meanwhile (the alerting service fetches its
        next batch while Redis runs this one's transaction). Nothing may be taken as stored
        until `result()` returns. A store with nothing to overlap does it all here."""
        ...

    def act(
        self,
        alert_id: str,
        action: Action,
        actor: str,
        now: float,
        *,
        unit: str | None = None,
        note: str = "",
    ) -> AlertChange:
        """An operator action, audited. Raises AlertNotFoundError or InvalidTransition."""
        ...

    def due_escalations(self, now: float) -> list[Alert]:
        """Open alerts past their acknowledgement deadline, earliest deadline first."""
        ...

    def escalate(
        self, alert_id: str, parent_id: str | None, now: float, sla_s: float | None
    ) -> AlertChange | None:
        """Pass an overdue alert to `parent_id` (None: mark it at the top). None when it is no
        longer due (acknowledged meanwhile, or another worker escalated it first)."""
        ...

    def get(self, alert_id: str) -> Alert | None: ...

    def list_alerts(self, center_id: str | None = None, open_only: bool = True) -> list[Alert]:
        """Alerts now at `center_id` (all centers when None), oldest first."""
        ...

    def audit(self, alert_id: str | None = None) -> list[AuditEntry]:
        """Audit entries in the order they were written: every one of an alert, or (None) the
        all-alerts audit, which leaves out the figures events fold in (see
        `AlertChange.in_all_alerts_audit`)."""
        ...

    def record_camera_status(self, event: CameraStatusEvent) -> bool:
        """Keep the latest status per camera; False when `event` is older than the one kept.
        Camera status never touches alerts: an offline camera does not resolve anything."""
        ...

    def camera_statuses(self) -> list[CameraStatusEvent]:
        """The latest status of every camera that reported one, by camera id."""
        ...

    def purge(self, now: float) -> int:
        """Retention: remove every resolved alert whose last change (its resolution, or a later
        event of its episode) is at least `resolved_retention_s` (the store's setting) before
        `now` (its record, index entries and own audit entries; an episode that is still going
        keeps its alert, which would otherwise come back as a new one), and the
        all-alerts audit entries older than that. Returns how many alerts went; 0 when the store
        keeps everything (no retention set). Redis dates the all-alerts audit stream by its own
        clock (stream ids), so `now` must be wall-clock time there."""
        ...

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with every change, in order; returns the unsubscribe function.
        Listeners must be quick (hand over to a queue) and must not raise: errors are logged."""
        ...

    def close(self) -> None:
        """Release connections and background threads. Idempotent."""
        ...


@dataclass(frozen=True, slots=True)
class _Done:
    results: list[AlertChange | None]
    error: Exception | None

    def result(self) -> list[AlertChange | None]:
        if self.error is not None:
            raise self.error
        return self.results


def applied_now(
    apply_events: Callable[[Sequence[CrowdEvent], RouteFn, float], list[AlertChange | None]],
    events: Sequence[CrowdEvent],
    decide: RouteFn,
    now: float,
) -> PendingEvents:
    """`submit_events` for a store that finishes at once: `apply_events` now, its result (or
    its error) handed over by `result()`."""
    try:
        return _Done(apply_events(events, decide, now), None)
    except Exception as exc:
        return _Done([], exc)


def apply_each(
    apply: Callable[[CrowdEvent, RouteFn, float], AlertChange | None],
    events: Sequence[CrowdEvent],
    decide: RouteFn,
    now: float,
) -> list[AlertChange | None]:
    """`apply_events` done one `apply` at a time (for stores with nothing better to offer, and
    as a fallback)."""
    results: list[AlertChange | None] = []
    for event in events:
        try:
            results.append(apply(event, decide, now))
        except Exception as exc:
            raise BatchApplyError(results, exc) from exc
    return results

"""In-process AlertStore (embedded mode and tests): dicts behind one lock."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from crowdwatch.core import alerts as lifecycle
from crowdwatch.core.alerts import Action, AlertChange
from crowdwatch.core.types import Alert, AlertState, AuditEntry, CameraStatusEvent, CrowdEvent
from crowdwatch.store.base import (
    AlertNotFoundError,
    BatchApplyError,
    Listener,
    PendingEvents,
    RouteFn,
    StoreUpdate,
    applied_now,
)
from crowdwatch.store.batch import BatchPlan, plan_batch

log = logging.getLogger(__name__)


class MemoryAlertStore:
    def __init__(
        self, *, resolved_retention_s: float | None = None, event_dedupe_ttl_s: float = 7 * 24 * 3600
    ) -> None:
        """`resolved_retention_s`: how long `purge` keeps resolved alerts; None keeps all.
        `event_dedupe_ttl_s`: how long an applied event id is remembered (as on Redis)."""
        if resolved_retention_s is not None and resolved_retention_s <= 0:
            raise ValueError(f"resolved_retention_s must be positive, got {resolved_retention_s}")
        self._retention_s = resolved_retention_s
        # Re-entrant: a listener may read the store while being notified.
        self._lock = threading.RLock()
        self._alerts: dict[str, Alert] = {}
        self._audit: list[AuditEntry] = []
        self._alert_audit: dict[str, list[AuditEntry]] = {}
        self._resolved_at: dict[str, float] = {}
        self._applied = AppliedIds(event_dedupe_ttl_s)
        self._cameras: dict[str, CameraStatusEvent] = {}
        self._listeners: list[Listener] = []

    def apply_event(self, event: CrowdEvent, decide: RouteFn, now: float) -> AlertChange | None:
        plan = self._apply([event], decide, now)
        if plan.failure is not None:
            raise plan.failure  # nothing stored: a retry starts afresh
        return plan.results[0]

    def apply_events(
        self, events: Sequence[CrowdEvent], decide: RouteFn, now: float
    ) -> list[AlertChange | None]:
        plan = self._apply(events, decide, now)
        if plan.failure is not None:
            raise BatchApplyError(plan.results, plan.failure) from plan.failure
        return plan.results

    def submit_events(self, events: Sequence[CrowdEvent], decide: RouteFn, now: float) -> PendingEvents:
        return applied_now(self.apply_events, events, decide, now)

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
        with self._lock:
            change = lifecycle.act(self._require(alert_id), action, actor, now, unit=unit, note=note)
            self._commit(change)
            return change

    def due_escalations(self, now: float) -> list[Alert]:
        with self._lock:
            due = [a for a in self._alerts.values() if lifecycle.is_due(a, now)]
        return sorted(due, key=lambda a: (a.escalate_at or 0.0, a.id))

    def escalate(
        self, alert_id: str, parent_id: str | None, now: float, sla_s: float | None
    ) -> AlertChange | None:
        with self._lock:
            alert = self._require(alert_id)
            # Re-checked under the lock: an operator may have acknowledged since due_escalations.
            if not lifecycle.is_due(alert, now):
                return None
            change = lifecycle.escalate(alert, parent_id, now, sla_s)
            self._commit(change)
            return change

    def get(self, alert_id: str) -> Alert | None:
        with self._lock:
            return self._alerts.get(alert_id)

    def list_alerts(self, center_id: str | None = None, open_only: bool = True) -> list[Alert]:
        with self._lock:
            found = [
                a
                for a in self._alerts.values()
                if (center_id is None or a.center_id == center_id) and (a.is_open or not open_only)
            ]
        return sorted(found, key=lambda a: (a.created_at, a.id))

    def audit(self, alert_id: str | None = None) -> list[AuditEntry]:
        with self._lock:
            return list(self._audit if alert_id is None else self._alert_audit.get(alert_id, ()))

    def purge(self, now: float) -> int:
        if self._retention_s is None:
            return 0
        horizon = now - self._retention_s
        with self._lock:
            gone = [a for a, resolved in self._resolved_at.items() if resolved <= horizon]
            for alert_id in gone:
                del self._resolved_at[alert_id]
                self._alerts.pop(alert_id, None)
                self._alert_audit.pop(alert_id, None)
            self._audit = [e for e in self._audit if e.ts > horizon]
        return len(gone)

    def record_camera_status(self, event: CameraStatusEvent) -> bool:
        with self._lock:
            kept = self._cameras.get(event.camera_id)
            if kept is not None and kept.ts > event.ts:
                return False
            self._cameras[event.camera_id] = event
            self._notify(event)
            return True

    def camera_statuses(self) -> list[CameraStatusEvent]:
        with self._lock:
            return [self._cameras[c] for c in sorted(self._cameras)]

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def close(self) -> None:
        """Nothing to release: the memory store lives and dies with its process."""

    def _apply(self, events: Sequence[CrowdEvent], decide: RouteFn, now: float) -> BatchPlan:
        """Plan `events` against the stored alerts and keep what the plan did (up to its
        failure, if any), in one step under the lock."""
        with self._lock:
            self._applied.expire(now)
            plan = plan_batch(events, self._applied, self._alerts, decide, now)
            # Marked applied only once planned without error, so a failed event can be retried.
            self._applied.add(plan.applied, now)
            for write in plan.writes:
                self._commit(write.change, announce=write.announce)
            return plan

    def _require(self, alert_id: str) -> Alert:
        alert = self._alerts.get(alert_id)
        if alert is None:
            raise AlertNotFoundError(alert_id)
        return alert

    def _commit(self, change: AlertChange, *, announce: bool = True) -> None:
        alert = change.alert
        if alert.state is AlertState.RESOLVED:  # retention counts from the last change
            self._resolved_at[alert.id] = alert.updated_at
        self._alerts[alert.id] = alert
        if change.in_all_alerts_audit:
            self._audit.extend(change.audit)
        self._alert_audit.setdefault(alert.id, []).extend(change.audit)
        if announce:
            self._notify(change)

    def _notify(self, update: StoreUpdate) -> None:
        # Under the lock, so that listeners see changes in the order they were made.
        for listener in list(self._listeners):
            try:
                listener(update)
            except Exception:
                log.exception("alert store listener %r failed; change kept", listener)


class AppliedIds:
    """Event ids applied, each forgotten `ttl_s` after it was applied (as the Redis store's
    dedupe marks expire), so that a long-running embedded process does not grow with every
    event it ever saw. A late duplicate is still refused by its alert's last seq."""

    def __init__(self, ttl_s: float) -> None:
        if ttl_s <= 0:
            raise ValueError(f"event_dedupe_ttl_s must be positive, got {ttl_s}")
        self._ttl_s = ttl_s
        self._ids: set[str] = set()
        self._order: deque[tuple[float, str]] = deque()  # (applied at, id), oldest first

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, event_ids: Iterable[str], now: float) -> None:
        for event_id in event_ids:
            if event_id not in self._ids:
                self._ids.add(event_id)
                self._order.append((now, event_id))

    def expire(self, now: float) -> None:
        """Forget the ids applied `ttl_s` or longer before `now` (clocks that step back only
        delay this)."""
        horizon = now - self._ttl_s
        order = self._order
        while order and order[0][0] <= horizon:
            self._ids.discard(order.popleft()[1])

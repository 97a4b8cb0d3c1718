"""The alert lifecycle (DESIGN 5) as pure functions: each takes an Alert and returns an
AlertChange (the new Alert plus one AuditEntry per change). No clock, no storage.

States: new -> acknowledged -> dispatched -> resolved, plus escalated. See `ALLOWED`.

Decisions:
- One alert per episode (id = `CrowdEvent.episode_key`). The first event seen opens it, whatever
  its type: a lost `started` must not lose the alert.
- Events with `seq <= last_event_seq` are stale (duplicate or out of order) and change nothing.
- `ended` marks `gathering_ended` and stops escalation, but the alert stays open: an operator
  resolves. Nobody is paged up the hierarchy for a gathering that is already over.
- Events on a resolved alert update its figures but do not reopen it: the operator's decision
  stands for this episode; a new gathering is a new episode, hence a new alert.
- A center without a parent (a district) cannot pass an overdue alert on: it is marked instead
  (state `escalated`, same center, level + 1, no further deadline, audit `escalation-exhausted`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final, Literal

from crowdwatch.core.fast_init import fast_init
from crowdwatch.core.routing import RouteDecision
from crowdwatch.core.types import Alert, AlertState, AuditEntry, CrowdEvent, EventType

SYSTEM_ACTOR: Final = "system"

ChangeKind = Literal["created", "updated", "transitioned", "escalated"]


class Action(StrEnum):
    """What an operator can do to an alert."""

    ACKNOWLEDGE = "acknowledge"
    DISPATCH = "dispatch"
    RESOLVE = "resolve"


_S = AlertState
# from-state -> states it may move to. ESCALATED -> ESCALATED is the next step up the hierarchy.
ALLOWED: Final[Mapping[AlertState, frozenset[AlertState]]] = {
    _S.NEW: frozenset({_S.ACKNOWLEDGED, _S.ESCALATED, _S.RESOLVED}),
    _S.ESCALATED: frozenset({_S.ACKNOWLEDGED, _S.ESCALATED, _S.RESOLVED}),
    _S.ACKNOWLEDGED: frozenset({_S.DISPATCHED, _S.RESOLVED}),
    _S.DISPATCHED: frozenset({_S.RESOLVED}),
    _S.RESOLVED: frozenset(),
}
ACTION_TARGET: Final[Mapping[Action, AlertState]] = {
    Action.ACKNOWLEDGE: _S.ACKNOWLEDGED,
    Action.DISPATCH: _S.DISPATCHED,
    Action.RESOLVE: _S.RESOLVED,
}


@fast_init
@dataclass(frozen=True, slots=True)
class AlertChange:
    """What one operation did: the alert after it and the audit entries it wrote."""

    alert: Alert
    audit: tuple[AuditEntry, ...]
    kind: ChangeKind

    @property
    def in_all_alerts_audit(self) -> bool:
        """Whether its audit entries also go to the all-alerts audit, the trail of who did what:
        an alert opened, an operator's action, an escalation. The figures an event folds in
        (count, severity, gathering ended) go only to the alert's own audit, so the all-alerts
        trail grows with alerts and actions, not with every event of every gathering."""
        return self.kind != "updated"


# The audit action of an event: its CloudEvents type (an enum's `.value` is a slow lookup, and
# this runs for every event).
_EVENT_ACTIONS: Final[Mapping[EventType, str]] = {t: t.value for t in EventType}


class InvalidTransition(Exception):  # noqa: N818 - the name the lifecycle spec uses
    def __init__(self, alert_id: str, from_state: AlertState, to_state: AlertState) -> None:
        self.alert_id = alert_id
        self.from_state = from_state
        self.to_state = to_state
        allowed = ", ".join(sorted(s.value for s in ALLOWED[from_state])) or "nothing (final state)"
        super().__init__(
            f"alert {alert_id}: cannot go from {from_state.value} to {to_state.value} "
            f"(from {from_state.value}: {allowed})"
        )


def can_transition(from_state: AlertState, to_state: AlertState) -> bool:
    return to_state in ALLOWED[from_state]


def is_due(alert: Alert, now: float) -> bool:
    """Overdue for escalation: not acknowledged within its deadline, gathering still going."""
    return (
        alert.state in (AlertState.NEW, AlertState.ESCALATED)
        and not alert.gathering_ended
        and alert.escalate_at is not None
        and alert.escalate_at <= now
    )


def open_alert(event: CrowdEvent, decision: RouteDecision, now: float) -> AlertChange:
    """A new alert for the episode of `event`, at the routed center, due for escalation after
    that center's SLA (`decision.ack_sla_s`) unless the gathering already ended."""
    ended = event.type is EventType.GATHERING_ENDED
    alert = Alert(
        id=event.episode_key,
        camera_id=event.camera_id,
        zone_id=event.zone_id,
        center_id=decision.center_id,
        origin_center_id=decision.center_id,
        route_reason=decision.reason,
        state=AlertState.NEW,
        severity=event.severity,
        count=event.count,
        peak=event.peak,
        density_per_m2=event.density_per_m2,
        method=event.method,
        location=event.location,
        episode_start=event.episode_start,
        created_at=now,
        updated_at=now,
        last_event_id=event.id,
        last_event_seq=event.seq,
        escalate_at=None if ended else now + decision.ack_sla_s,
        gathering_ended=ended,
    )
    note = f"routed to {decision.center_id} ({decision.reason})"
    if event.type is not EventType.GATHERING_STARTED:
        note += f"; opened from {event.type.value} seq {event.seq}: the started event was not seen"
    entry = _entry(alert, SYSTEM_ACTOR, "created", now, None, note, (("event_id", event.id),))
    return AlertChange(alert, (entry,), "created")


def apply_event(alert: Alert, event: CrowdEvent, now: float) -> AlertChange | None:
    """Fold a later event of the same episode into the alert; None when the event is stale."""
    if event.episode_key != alert.id:
        raise ValueError(f"event {event.id} belongs to episode {event.episode_key}, not alert {alert.id}")
    if event.seq <= alert.last_event_seq:
        return None
    ended = alert.gathering_ended or event.type is EventType.GATHERING_ENDED
    # Spelled out rather than dataclasses.replace: this runs for every event, and replace costs
    # several times as much (tests/core/test_alerts.py compares the two field by field).
    new = Alert(
        id=alert.id,
        camera_id=alert.camera_id,
        zone_id=alert.zone_id,
        center_id=alert.center_id,
        origin_center_id=alert.origin_center_id,
        route_reason=alert.route_reason,
        state=alert.state,
        severity=event.severity,
        count=event.count,
        peak=max(alert.peak, event.peak),
        density_per_m2=event.density_per_m2,
        method=event.method,
        location=alert.location,
        episode_start=alert.episode_start,
        created_at=alert.created_at,
        updated_at=now,
        last_event_id=event.id,
        last_event_seq=event.seq,
        escalation_level=alert.escalation_level,
        escalate_at=None if ended else alert.escalate_at,
        gathering_ended=ended,
        assigned_unit=alert.assigned_unit,
    )
    changes = [f"count {alert.count:g} -> {new.count:g}"]
    if new.severity is not alert.severity:
        changes.append(f"severity {alert.severity.label} -> {new.severity.label}")
    if ended and not alert.gathering_ended:
        changes.append("gathering ended")
    action = _EVENT_ACTIONS[event.type]
    entry = _entry(new, SYSTEM_ACTOR, action, now, alert.state, "; ".join(changes), (("event_id", event.id),))
    return AlertChange(new, (entry,), "updated")


def act(
    alert: Alert,
    action: Action,
    actor: str,
    now: float,
    *,
    unit: str | None = None,
    note: str = "",
) -> AlertChange:
    """An operator action. `unit` is required for (and only used by) dispatch."""
    target = ACTION_TARGET[Action(action)]
    if not can_transition(alert.state, target):
        raise InvalidTransition(alert.id, alert.state, target)
    if not actor:
        raise ValueError("an operator action needs an actor (who did it)")
    for name, text in (("actor", actor), ("unit", unit or ""), ("note", note)):
        if not _is_unicode(text):
            raise ValueError(f"alert {alert.id}: the {name} is not valid Unicode text (a lone surrogate)")
    extra: tuple[tuple[str, str], ...] = ()
    if target is AlertState.DISPATCHED:
        if not unit:
            raise ValueError(f"alert {alert.id}: dispatch needs a unit")
        extra = (("unit", unit),)
    # Any operator action means a human has the alert: its escalation deadline is cleared.
    new = replace(
        alert,
        state=target,
        updated_at=now,
        escalate_at=None,
        assigned_unit=unit if target is AlertState.DISPATCHED else alert.assigned_unit,
    )
    entry = _entry(new, actor, Action(action).value, now, alert.state, note, extra)
    return AlertChange(new, (entry,), "transitioned")


def _is_unicode(text: str) -> bool:
    """False for a string holding a lone surrogate (possible in Python, not in UTF-8 or a store)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def acknowledge(alert: Alert, actor: str, now: float, note: str = "") -> AlertChange:
    return act(alert, Action.ACKNOWLEDGE, actor, now, note=note)


def dispatch(alert: Alert, actor: str, now: float, unit: str, note: str = "") -> AlertChange:
    return act(alert, Action.DISPATCH, actor, now, unit=unit, note=note)


def resolve(alert: Alert, actor: str, now: float, note: str = "") -> AlertChange:
    return act(alert, Action.RESOLVE, actor, now, note=note)


def escalate(alert: Alert, parent_center_id: str | None, now: float, sla_s: float | None) -> AlertChange:
    """Pass the alert up to `parent_center_id` with a new deadline of that center's `sla_s`.
    With no parent (a district), mark it instead: see the module docstring."""
    if not can_transition(alert.state, AlertState.ESCALATED):
        raise InvalidTransition(alert.id, alert.state, AlertState.ESCALATED)
    level = alert.escalation_level + 1
    if parent_center_id is None:
        new = replace(
            alert, state=AlertState.ESCALATED, escalation_level=level, escalate_at=None, updated_at=now
        )
        note = f"not acknowledged in time at {alert.center_id}, which has no parent center"
        action = "escalation-exhausted"
    else:
        if sla_s is None or sla_s <= 0:
            raise ValueError(f"alert {alert.id}: escalating to {parent_center_id} needs its positive sla_s")
        new = replace(
            alert,
            state=AlertState.ESCALATED,
            center_id=parent_center_id,
            escalation_level=level,
            escalate_at=None if alert.gathering_ended else now + sla_s,
            updated_at=now,
        )
        note = f"not acknowledged in time at {alert.center_id}; passed to {parent_center_id}"
        action = "escalated"
    extra = (("from_center", alert.center_id), ("level", str(level)))
    entry = _entry(new, SYSTEM_ACTOR, action, now, alert.state, note, extra)
    return AlertChange(new, (entry,), "escalated")


def _entry(
    alert: Alert,
    actor: str,
    action: str,
    now: float,
    from_state: AlertState | None,
    note: str,
    extra: tuple[tuple[str, str], ...],
) -> AuditEntry:
    """`extra`: key-value pairs sorted by key (the order they are stored and compared in)."""
    return AuditEntry(
        alert_id=alert.id,
        actor=actor,
        action=action,
        ts=now,
        from_state=from_state,
        to_state=alert.state,
        note=note,
        center_id=alert.center_id,
        extra=extra,
    )

"""Alert lifecycle (DESIGN 5): opening, folding events in, every transition, escalation."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from crowdwatch.core import alerts
from crowdwatch.core.alerts import ALLOWED, Action, InvalidTransition
from crowdwatch.core.routing import RouteDecision
from crowdwatch.core.types import Alert, AlertState, CrowdEvent, EventType, GeoPoint, Severity
from event_builders import T0, crowd_event

S = AlertState
STARTED, UPDATED, ENDED = EventType.GATHERING_STARTED, EventType.GATHERING_UPDATED, EventType.GATHERING_ENDED
DECISION = RouteDecision("c1", "inside:community", 120.0)
# The values these tests' expectations were written against.
EVENT_DEFAULTS: dict[str, Any] = {
    "location": GeoPoint(31.0, 121.0),
    "count": 30.0,
    "peak": 30.0,
    "rise_per_min": 2.0,
}


def event(type: EventType = STARTED, seq: int = 0, **changes: Any) -> CrowdEvent:
    return crowd_event(type, seq, **{**EVENT_DEFAULTS, **changes})


def alert_in(state: AlertState, **changes: Any) -> Alert:
    return replace(alerts.open_alert(event(), DECISION, T0).alert, state=state, **changes)


# --- opening ----------------------------------------------------------------------------------


def test_open_from_started() -> None:
    change = alerts.open_alert(event(), DECISION, T0 + 1)
    a = change.alert
    assert change.kind == "created"
    assert (a.id, a.state, a.center_id, a.origin_center_id) == ("cam-1:gate:1700000000000", S.NEW, "c1", "c1")
    assert (a.route_reason, a.escalate_at, a.escalation_level) == ("inside:community", T0 + 121, 0)
    assert (a.last_event_seq, a.gathering_ended) == (0, False)
    (entry,) = change.audit
    assert (entry.actor, entry.action, entry.from_state, entry.to_state) == ("system", "created", None, S.NEW)
    assert entry.center_id == "c1"
    assert "inside:community" in entry.note


@pytest.mark.parametrize(("type", "ended"), [(UPDATED, False), (ENDED, True)])
def test_open_when_started_was_lost(type: EventType, ended: bool) -> None:
    change = alerts.open_alert(event(type, seq=4), DECISION, T0)
    assert change.alert.last_event_seq == 4
    assert change.alert.gathering_ended is ended
    assert (change.alert.escalate_at is None) is ended
    assert "started event was not seen" in change.audit[0].note


# --- events -----------------------------------------------------------------------------------


def test_update_changes_figures_and_keeps_the_peak() -> None:
    a = alerts.open_alert(event(peak=50.0), DECISION, T0).alert
    change = alerts.apply_event(
        a, event(UPDATED, seq=1, count=45.0, peak=45.0, density_per_m2=3.1, severity=Severity.HIGH), T0 + 5
    )
    assert change is not None
    new = change.alert
    assert (new.count, new.peak, new.density_per_m2, new.severity) == (45.0, 50.0, 3.1, Severity.HIGH)
    assert (new.updated_at, new.last_event_seq, new.state, new.escalate_at) == (
        T0 + 5,
        1,
        S.NEW,
        a.escalate_at,
    )
    assert change.kind == "updated"
    (entry,) = change.audit
    assert entry.action == "crowd.gathering.updated"
    assert "severity medium -> high" in entry.note


def test_an_event_changes_only_the_figures_it_carries() -> None:
    """Every other field, including those with defaults, comes through unchanged."""
    a = alert_in(
        S.DISPATCHED,
        center_id="s1",
        escalation_level=1,
        escalate_at=T0 + 99,
        assigned_unit="van-3",
        density_per_m2=2.0,
        method="density",
    )
    e = event(UPDATED, seq=4, count=41.0, peak=41.0, density_per_m2=None, severity=Severity.HIGH)
    change = alerts.apply_event(a, e, T0 + 7)
    assert change is not None
    expected = replace(
        a,
        severity=Severity.HIGH,
        count=41.0,
        peak=41.0,
        density_per_m2=None,
        method=e.method,
        updated_at=T0 + 7,
        last_event_id=e.id,
        last_event_seq=4,
    )
    assert change.alert == expected


@pytest.mark.parametrize("seq", [0, 2, 1], ids=["duplicate-started", "duplicate", "out-of-order"])
def test_stale_events_change_nothing(seq: int) -> None:
    a = replace(alerts.open_alert(event(), DECISION, T0).alert, last_event_seq=2)
    assert alerts.apply_event(a, event(UPDATED, seq=seq, count=99.0), T0 + 9) is None


def test_event_of_another_episode_is_refused() -> None:
    a = alerts.open_alert(event(), DECISION, T0).alert
    with pytest.raises(ValueError, match="belongs to episode"):
        alerts.apply_event(a, event(UPDATED, seq=1, episode_start=T0 + 60), T0)


def test_ended_marks_the_gathering_but_leaves_the_alert_open_and_stops_escalation() -> None:
    a = alerts.open_alert(event(), DECISION, T0).alert
    change = alerts.apply_event(a, event(ENDED, seq=2, count=3.0), T0 + 10)
    assert change is not None
    assert change.alert.gathering_ended
    assert change.alert.is_open
    assert change.alert.state is S.NEW
    assert change.alert.escalate_at is None
    assert not alerts.is_due(change.alert, T0 + 10_000)
    assert "gathering ended" in change.audit[0].note


def test_events_on_a_resolved_alert_do_not_reopen_it() -> None:
    a = alert_in(S.RESOLVED, escalate_at=None)
    change = alerts.apply_event(a, event(UPDATED, seq=1, count=80.0, severity=Severity.CRITICAL), T0 + 3)
    assert change is not None
    assert change.alert.state is S.RESOLVED
    assert change.alert.count == 80.0


# --- operator actions: the whole transition table ----------------------------------------------

TARGET = {Action.ACKNOWLEDGE: S.ACKNOWLEDGED, Action.DISPATCH: S.DISPATCHED, Action.RESOLVE: S.RESOLVED}
CASES = [(state, action) for state in AlertState for action in Action]


@pytest.mark.parametrize(("state", "action"), CASES, ids=[f"{s.value}-{a.value}" for s, a in CASES])
def test_operator_transitions(state: AlertState, action: Action) -> None:
    a = alert_in(state)
    allowed = {
        S.NEW: {Action.ACKNOWLEDGE, Action.RESOLVE},
        S.ESCALATED: {Action.ACKNOWLEDGE, Action.RESOLVE},
        S.ACKNOWLEDGED: {Action.DISPATCH, Action.RESOLVE},
        S.DISPATCHED: {Action.RESOLVE},
        S.RESOLVED: set(),
    }[state]
    if action in allowed:
        change = alerts.act(a, action, "op-anna", T0 + 30, unit="van-7", note="on it")
        assert change.alert.state is TARGET[action]
        assert change.alert.escalate_at is None
        assert change.kind == "transitioned"
        (entry,) = change.audit
        assert (entry.actor, entry.action, entry.ts, entry.from_state, entry.to_state, entry.note) == (
            "op-anna",
            action.value,
            T0 + 30,
            state,
            TARGET[action],
            "on it",
        )
    else:
        with pytest.raises(InvalidTransition, match=f"from {state.value} to {TARGET[action].value}") as err:
            alerts.act(a, action, "op-anna", T0 + 30, unit="van-7")
        assert (err.value.from_state, err.value.to_state) == (state, TARGET[action])


def test_table_matches_the_design() -> None:
    assert ALLOWED[S.NEW] == {S.ACKNOWLEDGED, S.ESCALATED, S.RESOLVED}
    assert ALLOWED[S.ACKNOWLEDGED] == {S.DISPATCHED, S.RESOLVED}
    assert ALLOWED[S.DISPATCHED] == {S.RESOLVED}
    assert ALLOWED[S.ESCALATED] == {S.ACKNOWLEDGED, S.ESCALATED, S.RESOLVED}
    assert ALLOWED[S.RESOLVED] == frozenset()


def test_dispatch_records_the_unit() -> None:
    change = alerts.dispatch(alert_in(S.ACKNOWLEDGED), "op-anna", T0, unit="van-7")
    assert change.alert.assigned_unit == "van-7"
    assert change.audit[0].extra == (("unit", "van-7"),)


def test_dispatch_needs_a_unit_and_actions_need_an_actor() -> None:
    with pytest.raises(ValueError, match="needs a unit"):
        alerts.act(alert_in(S.ACKNOWLEDGED), Action.DISPATCH, "op", T0)
    with pytest.raises(ValueError, match="needs an actor"):
        alerts.acknowledge(alert_in(S.NEW), "", T0)


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("actor", {"actor": "op\ud800"}),
        ("note", {"note": "see \udcff"}),
        ("unit", {"unit": "van-\ud800"}),
    ],
)
def test_operator_text_must_be_storable_unicode(field: str, kwargs: dict[str, str]) -> None:
    """A lone surrogate passes Python but no store (the Redis store would fail to send it)."""
    args = {"actor": "op", "unit": "van-7", **kwargs}
    with pytest.raises(ValueError, match=f"the {field} is not valid Unicode text"):
        alerts.act(
            alert_in(S.ACKNOWLEDGED),
            Action.DISPATCH,
            args["actor"],
            T0,
            unit=args["unit"],
            note=args.get("note", ""),
        )


def test_shortcuts() -> None:
    a = alerts.acknowledge(alert_in(S.NEW), "op", T0).alert
    a = alerts.dispatch(a, "op", T0, "van-1").alert
    assert alerts.resolve(a, "op", T0).alert.state is S.RESOLVED


# --- escalation --------------------------------------------------------------------------------


def test_escalation_chain_community_street_district_then_marked() -> None:
    a = alerts.open_alert(event(), DECISION, T0).alert  # at c1, SLA 120
    assert not alerts.is_due(a, T0 + 119)
    assert alerts.is_due(a, T0 + 120)

    first = alerts.escalate(a, "s1", T0 + 120, 300.0)
    b = first.alert
    assert (b.state, b.center_id, b.origin_center_id, b.escalation_level, b.escalate_at) == (
        S.ESCALATED,
        "s1",
        "c1",
        1,
        T0 + 420,
    )
    assert first.kind == "escalated"
    assert (first.audit[0].action, first.audit[0].center_id) == ("escalated", "s1")
    assert dict(first.audit[0].extra) == {"from_center": "c1", "level": "1"}

    c = alerts.escalate(b, "d1", T0 + 420, 600.0).alert
    assert (c.center_id, c.escalation_level, c.escalate_at) == ("d1", 2, T0 + 1020)

    top = alerts.escalate(c, None, T0 + 1020, None)
    d = top.alert
    assert (d.state, d.center_id, d.escalation_level, d.escalate_at) == (S.ESCALATED, "d1", 3, None)
    assert top.audit[0].action == "escalation-exhausted"
    assert not alerts.is_due(d, T0 + 10**6)


@pytest.mark.parametrize("state", [S.ACKNOWLEDGED, S.DISPATCHED, S.RESOLVED])
def test_handled_alerts_do_not_escalate(state: AlertState) -> None:
    a = alert_in(state)
    assert not alerts.is_due(a, T0 + 10**6)
    with pytest.raises(InvalidTransition, match="to escalated"):
        alerts.escalate(a, "s1", T0, 300.0)


def test_acknowledging_an_escalated_alert_keeps_it_at_the_parent() -> None:
    b = alerts.escalate(alerts.open_alert(event(), DECISION, T0).alert, "s1", T0 + 120, 300.0).alert
    acked = alerts.acknowledge(b, "op-street", T0 + 200).alert
    assert (acked.state, acked.center_id, acked.escalate_at) == (S.ACKNOWLEDGED, "s1", None)


def test_escalating_to_a_parent_needs_its_sla() -> None:
    with pytest.raises(ValueError, match="positive sla_s"):
        alerts.escalate(alert_in(S.NEW), "s1", T0, None)

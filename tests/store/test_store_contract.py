"""What every AlertStore must do: atomic, deduplicated, audited alert changes."""

from __future__ import annotations

import threading

import pytest

from crowdwatch.core.alerts import Action, AlertChange, InvalidTransition
from crowdwatch.core.routing import RouteDecision
from crowdwatch.core.types import AlertState, CrowdEvent, EventType
from crowdwatch.store.base import AlertNotFoundError, AlertStore, StoreUpdate

from .events import T0, Decide, camera_event, crowd_event
from .polling import wait_until

STARTED, UPDATED, ENDED = EventType.GATHERING_STARTED, EventType.GATHERING_UPDATED, EventType.GATHERING_ENDED
ALERT_ID = "cam-1:gate:1700000000000"


def test_first_event_creates_the_alert(store: AlertStore) -> None:
    decide = Decide()
    change = store.apply_event(crowd_event(), decide, T0 + 1)
    assert change is not None
    assert change.kind == "created"
    assert change.alert.id == ALERT_ID
    assert (change.alert.center_id, change.alert.escalate_at) == ("c1", T0 + 121)
    assert store.get(ALERT_ID) == change.alert
    assert store.audit(ALERT_ID) == list(change.audit)
    assert decide.calls == [crowd_event().id]


def test_redelivered_event_is_ignored(store: AlertStore) -> None:
    decide = Decide()
    store.apply_event(crowd_event(), decide, T0)
    store.apply_event(crowd_event(UPDATED, seq=1), decide, T0 + 1)
    before = store.get(ALERT_ID)
    assert store.apply_event(crowd_event(), decide, T0 + 2) is None
    assert store.apply_event(crowd_event(UPDATED, seq=1), decide, T0 + 3) is None
    assert store.get(ALERT_ID) == before
    assert len(store.audit(ALERT_ID)) == 2
    assert len(decide.calls) == 1  # routed once, at creation


def test_out_of_order_event_is_ignored(store: AlertStore) -> None:
    store.apply_event(crowd_event(UPDATED, seq=3, count=50.0), Decide(), T0)
    assert store.apply_event(crowd_event(UPDATED, seq=2, count=40.0), Decide(), T0 + 1) is None
    alert = store.get(ALERT_ID)
    assert alert is not None
    assert (alert.count, alert.last_event_seq) == (50.0, 3)


def test_lifecycle_through_the_store(store: AlertStore) -> None:
    store.apply_event(crowd_event(), Decide(), T0)
    update = store.apply_event(crowd_event(UPDATED, seq=1, count=60.0, peak=60.0), Decide(), T0 + 5)
    assert update is not None
    assert update.kind == "updated"
    assert store.act(ALERT_ID, Action.ACKNOWLEDGE, "op-anna", T0 + 6).alert.state is AlertState.ACKNOWLEDGED
    dispatched = store.act(ALERT_ID, Action.DISPATCH, "op-anna", T0 + 7, unit="van-3", note="north gate")
    assert dispatched.alert.assigned_unit == "van-3"
    ended = store.apply_event(crowd_event(ENDED, seq=2, count=4.0), Decide(), T0 + 8)
    assert ended is not None
    assert ended.alert.gathering_ended
    assert ended.alert.state is AlertState.DISPATCHED
    resolved = store.act(ALERT_ID, Action.RESOLVE, "op-bert", T0 + 9)
    assert resolved.kind == "transitioned"
    trail = [(e.actor, e.action, e.to_state) for e in store.audit(ALERT_ID)]
    assert trail == [
        ("system", "created", AlertState.NEW),
        ("system", "crowd.gathering.updated", AlertState.NEW),
        ("op-anna", "acknowledge", AlertState.ACKNOWLEDGED),
        ("op-anna", "dispatch", AlertState.DISPATCHED),
        ("system", "crowd.gathering.ended", AlertState.DISPATCHED),
        ("op-bert", "resolve", AlertState.RESOLVED),
    ]
    assert store.list_alerts() == []
    assert [a.id for a in store.list_alerts(open_only=False)] == [ALERT_ID]


def test_the_all_alerts_audit_holds_openings_actions_and_escalations(store: AlertStore) -> None:
    """Not the figures events fold in: those stay in each alert's own audit."""
    store.apply_event(crowd_event(), Decide(sla_s=60), T0)
    store.apply_event(crowd_event(zone_id="exit"), Decide(), T0)
    for seq in (1, 2):
        store.apply_event(crowd_event(UPDATED, seq=seq, count=40.0 + seq), Decide(), T0 + seq)
    store.escalate(ALERT_ID, "s1", T0 + 61, 300.0)
    store.act(ALERT_ID, Action.ACKNOWLEDGE, "op-anna", T0 + 62)
    store.apply_event(crowd_event(ENDED, seq=3, count=4.0), Decide(), T0 + 63)
    trail = [(e.alert_id, e.action) for e in store.audit()]
    assert trail == [
        (ALERT_ID, "created"),
        ("cam-1:exit:1700000000000", "created"),
        (ALERT_ID, "escalated"),
        (ALERT_ID, "acknowledge"),
    ]
    assert [e.action for e in store.audit(ALERT_ID)] == [
        "created",
        "crowd.gathering.updated",
        "crowd.gathering.updated",
        "escalated",
        "acknowledge",
        "crowd.gathering.ended",
    ]


def test_invalid_action_changes_nothing(store: AlertStore) -> None:
    store.apply_event(crowd_event(), Decide(), T0)
    with pytest.raises(InvalidTransition, match="from new to dispatched"):
        store.act(ALERT_ID, Action.DISPATCH, "op", T0 + 1, unit="van")
    alert = store.get(ALERT_ID)
    assert alert is not None
    assert alert.state is AlertState.NEW
    assert len(store.audit(ALERT_ID)) == 1


def test_unknown_alert(store: AlertStore) -> None:
    assert store.get("nope") is None
    with pytest.raises(AlertNotFoundError, match="no alert 'nope'"):
        store.act("nope", Action.ACKNOWLEDGE, "op", T0)
    with pytest.raises(AlertNotFoundError):
        store.escalate("nope", "s1", T0, 300.0)


def test_due_escalations_and_escalate(store: AlertStore) -> None:
    store.apply_event(crowd_event(), Decide(sla_s=120), T0)
    store.apply_event(crowd_event(zone_id="exit"), Decide(sla_s=60), T0)
    assert store.due_escalations(T0 + 59) == []
    assert [a.zone_id for a in store.due_escalations(T0 + 200)] == ["exit", "gate"]  # earliest first
    change = store.escalate(ALERT_ID, "s1", T0 + 200, 300.0)
    assert change is not None
    assert change.kind == "escalated"
    assert (change.alert.center_id, change.alert.escalate_at) == ("s1", T0 + 500)
    assert [a.id for a in store.list_alerts(center_id="s1")] == [ALERT_ID]
    assert store.audit(ALERT_ID)[-1].action == "escalated"


def test_escalate_is_a_no_op_when_no_longer_due(store: AlertStore) -> None:
    """An operator acknowledged between due_escalations and escalate, or another worker won."""
    store.apply_event(crowd_event(), Decide(), T0)
    (due,) = store.due_escalations(T0 + 500)
    store.act(due.id, Action.ACKNOWLEDGE, "op", T0 + 500)
    assert store.escalate(due.id, "s1", T0 + 500, 300.0) is None
    store.apply_event(crowd_event(zone_id="exit"), Decide(), T0)
    (other,) = store.due_escalations(T0 + 500)
    assert store.escalate(other.id, "s1", T0 + 500, 300.0) is not None
    assert store.escalate(other.id, "s1", T0 + 500, 300.0) is None  # the second worker


def test_escalation_at_the_top_marks_the_alert(store: AlertStore) -> None:
    store.apply_event(crowd_event(), Decide(center="d1"), T0)
    change = store.escalate(ALERT_ID, None, T0 + 200, None)
    assert change is not None
    assert (change.alert.state, change.alert.center_id, change.alert.escalate_at) == (
        AlertState.ESCALATED,
        "d1",
        None,
    )
    assert store.due_escalations(T0 + 10**6) == []


def test_ended_gathering_does_not_escalate(store: AlertStore) -> None:
    store.apply_event(crowd_event(), Decide(), T0)
    store.apply_event(crowd_event(ENDED, seq=1), Decide(), T0 + 10)
    assert store.due_escalations(T0 + 10**6) == []
    assert [a.id for a in store.list_alerts()] == [ALERT_ID]  # still open


def test_list_alerts_by_center(store: AlertStore) -> None:
    store.apply_event(crowd_event(zone_id="a"), Decide(center="c1"), T0)
    store.apply_event(crowd_event(zone_id="b"), Decide(center="s2"), T0 + 1)
    store.apply_event(crowd_event(zone_id="c"), Decide(center="c1"), T0 + 2)
    assert [a.zone_id for a in store.list_alerts(center_id="c1")] == ["a", "c"]
    assert [a.zone_id for a in store.list_alerts()] == ["a", "b", "c"]
    assert store.list_alerts(center_id="zz") == []


def test_failed_routing_stores_nothing_and_can_be_retried(store: AlertStore) -> None:
    def broken(event: CrowdEvent) -> RouteDecision:
        raise RuntimeError("geo index down")

    with pytest.raises(RuntimeError, match="geo index down"):
        store.apply_event(crowd_event(), broken, T0)
    assert store.get(ALERT_ID) is None
    assert store.audit() == []
    assert store.apply_event(crowd_event(), Decide(), T0) is not None


def test_camera_status_keeps_the_latest(store: AlertStore) -> None:
    assert store.record_camera_status(camera_event(EventType.CAMERA_OFFLINE, ts=T0 + 10))
    assert not store.record_camera_status(camera_event(EventType.CAMERA_ONLINE, ts=T0 + 5))
    assert store.record_camera_status(camera_event(EventType.CAMERA_DEGRADED, ts=T0 + 10, camera_id="cam-0"))
    assert [(s.camera_id, s.type) for s in store.camera_statuses()] == [
        ("cam-0", EventType.CAMERA_DEGRADED),
        ("cam-1", EventType.CAMERA_OFFLINE),
    ]


def test_camera_offline_leaves_open_alerts_alone(store: AlertStore) -> None:
    store.apply_event(crowd_event(), Decide(), T0)
    store.record_camera_status(camera_event(EventType.CAMERA_OFFLINE, ts=T0 + 30))
    alert = store.get(ALERT_ID)
    assert alert is not None
    assert alert.is_open


def test_listeners_follow_changes_in_order(store: AlertStore) -> None:
    """Listeners may be called from another thread (Redis), hence the waiting."""
    seen: list[StoreUpdate] = []
    unsubscribe = store.subscribe(seen.append)

    def broken(update: StoreUpdate) -> None:
        raise RuntimeError("console gone")

    store.subscribe(broken)  # must not break storing
    witness: list[StoreUpdate] = []
    store.subscribe(witness.append)  # called after `seen` for every update
    store.apply_event(crowd_event(), Decide(), T0)
    store.act(ALERT_ID, Action.ACKNOWLEDGE, "op", T0 + 1)
    store.record_camera_status(camera_event(ts=T0 + 2))
    wait_until(lambda: len(witness) == 3, "three updates")
    kinds = [u.kind if isinstance(u, AlertChange) else u.type.value for u in seen]
    assert kinds == ["created", "transitioned", "camera.offline"]
    unsubscribe()
    store.act(ALERT_ID, Action.RESOLVE, "op", T0 + 3)
    wait_until(lambda: len(witness) == 4, "the resolve")
    assert len(seen) == 3


def test_concurrent_redelivery_creates_one_alert(store: AlertStore) -> None:
    events = [crowd_event(), *(crowd_event(UPDATED, seq=i) for i in range(1, 6))]
    start = threading.Barrier(4)

    def worker() -> None:
        start.wait()
        for e in events:
            store.apply_event(e, Decide(), T0)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.id for a in store.list_alerts()] == [ALERT_ID]
    assert [e.action for e in store.audit(ALERT_ID)].count("created") == 1
    alert = store.get(ALERT_ID)
    assert alert is not None
    assert alert.last_event_seq == 5

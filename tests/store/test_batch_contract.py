"""What every AlertStore's apply_events must do: exactly what apply_event does event by event,
including repeats and stale events inside one batch, and stop cleanly at a failure."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from crowdwatch.core.alerts import AlertChange
from crowdwatch.core.routing import RouteDecision
from crowdwatch.core.types import CrowdEvent, EventType, Severity
from crowdwatch.store.base import AlertStore, BatchApplyError, StoreUpdate
from crowdwatch.store.batch import plan_batch

from .events import T0, Decide, crowd_event
from .polling import wait_until

STARTED, UPDATED, ENDED = EventType.GATHERING_STARTED, EventType.GATHERING_UPDATED, EventType.GATHERING_ENDED
GATE, EXIT = "cam-1:gate:1700000000000", "cam-1:exit:1700000000000"

# Two episodes interleaved, with what makes batching tricky: two events of one new alert, a
# repeat inside the batch, an event older than one before it, events after `ended`.
MIXED = [
    crowd_event(STARTED, seq=0),
    crowd_event(UPDATED, seq=1, count=40.0, peak=40.0),
    crowd_event(UPDATED, seq=1, count=40.0, peak=40.0),  # the same event again
    crowd_event(STARTED, seq=0, zone_id="exit"),
    crowd_event(UPDATED, seq=3, count=60.0, peak=60.0),
    crowd_event(UPDATED, seq=2, count=50.0, peak=50.0),  # older than seq 3: stale
    crowd_event(ENDED, seq=1, zone_id="exit", count=3.0),
    crowd_event(ENDED, seq=4, count=5.0),
    crowd_event(UPDATED, seq=5, count=7.0),
]


def _kinds(results: Sequence[AlertChange | None]) -> list[str | None]:
    return [None if r is None else r.kind for r in results]


def test_a_batch_does_what_one_event_at_a_time_does(store_factory: Callable[[], AlertStore]) -> None:
    batched, single = store_factory(), store_factory()
    routed_batched, routed_single = Decide(), Decide()
    got = batched.apply_events(MIXED, routed_batched, T0 + 1)
    expected = [single.apply_event(e, routed_single, T0 + 1) for e in MIXED]
    assert got == expected
    assert _kinds(got) == [
        "created",
        "updated",
        None,
        "created",
        "updated",
        None,
        "updated",
        "updated",
        "updated",
    ]
    assert routed_batched.calls == routed_single.calls == [MIXED[0].id, MIXED[3].id]  # once per alert
    assert batched.list_alerts(open_only=False) == single.list_alerts(open_only=False)
    assert batched.list_alerts(center_id="c1") == single.list_alerts(center_id="c1")
    assert batched.audit() == single.audit()  # the same entries in the same order
    assert batched.audit(GATE) == single.audit(GATE)
    # Both gatherings ended within the batch: nothing waits for an escalation.
    assert batched.due_escalations(T0 + 10**6) == single.due_escalations(T0 + 10**6) == []


def test_a_new_alert_stays_due_when_its_batch_does_not_end_it(store: AlertStore) -> None:
    store.apply_events(
        [crowd_event(), crowd_event(UPDATED, seq=1), crowd_event(zone_id="exit")], Decide(), T0
    )
    assert [a.id for a in store.due_escalations(T0 + 120)] == [EXIT, GATE]
    assert [a.id for a in store.list_alerts(center_id="c1")] == [EXIT, GATE]


def test_events_applied_before_the_batch_change_nothing(store: AlertStore) -> None:
    store.apply_event(crowd_event(), Decide(), T0)
    store.apply_event(crowd_event(UPDATED, seq=1), Decide(), T0 + 1)
    results = store.apply_events(
        [crowd_event(), crowd_event(UPDATED, seq=1), crowd_event(UPDATED, seq=2)], Decide(), T0 + 2
    )
    assert _kinds(results) == [None, None, "updated"]


def test_a_redelivered_batch_changes_nothing(store: AlertStore) -> None:
    store.apply_events(MIXED, Decide(), T0)
    audit = store.audit()
    assert store.apply_events(MIXED, Decide(), T0 + 5) == [None] * len(MIXED)
    assert store.audit() == audit


def test_a_failure_stops_the_batch_at_that_event(store: AlertStore) -> None:
    def no_exit(event: CrowdEvent) -> RouteDecision:
        if event.zone_id == "exit":
            raise RuntimeError("geo index down")
        return RouteDecision("c1", "inside:community", 120.0)

    events = [
        crowd_event(),
        crowd_event(UPDATED, seq=1),
        crowd_event(zone_id="exit"),
        crowd_event(UPDATED, seq=2),
    ]
    with pytest.raises(BatchApplyError) as failed:
        store.apply_events(events, no_exit, T0)
    assert _kinds(failed.value.applied) == ["created", "updated"]
    assert isinstance(failed.value.cause, RuntimeError)
    assert store.get(EXIT) is None
    gate = store.get(GATE)
    assert gate is not None
    assert gate.last_event_seq == 1  # what came after the failure is not stored either
    # The caller retries from the failed event.
    assert _kinds(store.apply_events(events[2:], Decide(), T0 + 1)) == ["created", "updated"]


def test_an_empty_batch(store: AlertStore) -> None:
    assert store.apply_events([], Decide(), T0) == []


def test_listeners_hear_each_alert_once_its_updates_settle_within_a_batch(store: AlertStore) -> None:
    """Listeners may be called from another thread (Redis), hence the waiting."""
    seen: list[StoreUpdate] = []
    store.subscribe(seen.append)
    changes = [c for c in store.apply_events(MIXED, Decide(), T0) if c is not None]
    assert _kinds(changes) == ["created", "updated", "created", "updated", "updated", "updated", "updated"]
    # A count update followed in the batch by another change of its alert is stored and
    # audited but not announced (store.batch): GATE's seq 1 and 3. Openings, EXIT's one
    # update, GATE's end (seq 4) and its last change are, in order.
    announced = [changes[i] for i in (0, 2, 4, 5, 6)]
    wait_until(lambda: len(seen) >= len(announced), "the batch's announcements")
    assert seen[: len(announced)] == announced
    # Nothing else comes: the next change is the next one heard.
    later = store.apply_event(crowd_event(STARTED, seq=0, zone_id="hall"), Decide(), T0 + 1)
    wait_until(lambda: len(seen) > len(announced), "the next change")
    assert seen == [*announced, later]
    assert len(store.audit(GATE)) == 5  # every change of GATE is still in its audit


@pytest.mark.parametrize(
    ("events", "announced"),
    [
        ([crowd_event(), crowd_event(UPDATED, seq=1)], [True, True]),  # an opening always is
        ([crowd_event(UPDATED, seq=1), crowd_event(UPDATED, seq=2)], [True, True]),  # opened by seq 1
        ([crowd_event(), crowd_event(UPDATED, seq=1), crowd_event(UPDATED, seq=2)], [True, False, True]),
        ([crowd_event(), crowd_event(UPDATED, seq=1), crowd_event(ENDED, seq=2)], [True, False, True]),
        # A severity change or an end is announced even when the next change undoes or follows it.
        (
            [
                crowd_event(),
                crowd_event(UPDATED, seq=1, severity=Severity.CRITICAL, count=90.0, peak=90.0),
                crowd_event(UPDATED, seq=2, severity=Severity.CRITICAL, count=95.0, peak=95.0),
                crowd_event(UPDATED, seq=3, severity=Severity.MEDIUM, count=40.0),
                crowd_event(UPDATED, seq=4, severity=Severity.MEDIUM, count=41.0),
            ],
            [True, True, False, True, True],
        ),
        ([crowd_event(), crowd_event(ENDED, seq=1), crowd_event(UPDATED, seq=2)], [True, True, True]),
        # Another alert's change between them does not matter; a stale event is no change.
        (
            [
                crowd_event(),
                crowd_event(UPDATED, seq=1),
                crowd_event(zone_id="exit"),
                crowd_event(UPDATED, seq=1),
                crowd_event(UPDATED, seq=2),
            ],
            [True, False, True, True],
        ),
    ],
)
def test_which_changes_of_a_batch_are_announced(events: list[CrowdEvent], announced: list[bool]) -> None:
    plan = plan_batch(events, (), {}, Decide(), T0)
    assert [w.announce for w in plan.writes] == announced


def test_a_submitted_batch_ends_as_apply_events_does(store_factory: Callable[[], AlertStore]) -> None:
    submitted, applied = store_factory(), store_factory()
    pending = submitted.submit_events(MIXED, Decide(), T0 + 1)
    # The store goes on without result(), and serves other calls meanwhile (on Redis over
    # another connection): what result() adds is the confirmation.
    wait_until(lambda: submitted.get(EXIT) is not None, "the submitted batch stored")
    got = pending.result()
    assert got == applied.apply_events(MIXED, Decide(), T0 + 1)
    assert submitted.list_alerts(open_only=False) == applied.list_alerts(open_only=False)
    assert submitted.audit() == applied.audit()
    assert submitted.audit(GATE) == applied.audit(GATE)
    assert submitted.submit_events(MIXED, Decide(), T0 + 2).result() == [None] * len(MIXED)
    assert submitted.submit_events([], Decide(), T0 + 2).result() == []


def test_a_submitted_batch_reports_its_failure_in_result(store: AlertStore) -> None:
    def no_exit(event: CrowdEvent) -> RouteDecision:
        if event.zone_id == "exit":
            raise RuntimeError("geo index down")
        return RouteDecision("c1", "inside:community", 120.0)

    pending = store.submit_events([crowd_event(), crowd_event(zone_id="exit")], no_exit, T0)
    with pytest.raises(BatchApplyError) as failed:
        pending.result()
    assert _kinds(failed.value.applied) == ["created"]
    assert store.get(EXIT) is None
    assert store.get(GATE) is not None

"""Retention, on every AlertStore: `purge` removes resolved alerts once they are old enough,
with their audit, and nothing else."""

from __future__ import annotations

import time

from crowdwatch.core.alerts import Action
from crowdwatch.core.types import AlertState, EventType
from crowdwatch.store.base import AlertStore

from .conftest import RETENTION_S
from .events import T0, Decide, crowd_event

GATE = "cam-1:gate:1700000000000"
PLAZA = "cam-2:plaza:1700000000000"
UPDATED = EventType.GATHERING_UPDATED


def _two_alerts(store: AlertStore, now: float) -> None:
    """`GATE` resolved at `now` + 2, `PLAZA` left open."""
    store.apply_event(crowd_event(), Decide(), now)
    store.apply_event(crowd_event(camera_id="cam-2", zone_id="plaza"), Decide("c2"), now + 1)
    store.act(GATE, Action.RESOLVE, "op-anna", now + 2)


def test_an_old_resolved_alert_is_removed_with_its_audit(retention_store: AlertStore) -> None:
    store = retention_store
    _two_alerts(store, T0)
    plaza_audit = store.audit(PLAZA)
    # Wall-clock time long after: Redis dates its all-alerts audit stream by its own clock.
    later = time.time() + 2 * RETENTION_S
    assert store.purge(later) == 1
    assert store.get(GATE) is None
    assert store.audit(GATE) == []
    assert [a.id for a in store.list_alerts(open_only=False)] == [PLAZA]
    assert store.list_alerts("c1", open_only=False) == []
    # The open alert keeps its own audit; the all-alerts audit keeps only the retention window.
    assert store.get(PLAZA) is not None
    assert store.audit(PLAZA) == plaza_audit
    assert store.audit() == []
    assert store.purge(later) == 0


def test_nothing_younger_than_the_retention_is_removed(retention_store: AlertStore) -> None:
    store = retention_store
    now = time.time()
    _two_alerts(store, now)
    everything = store.audit()
    assert store.purge(now + 2 + RETENTION_S - 60) == 0
    resolved = store.get(GATE)
    assert resolved is not None
    assert resolved.state is AlertState.RESOLVED
    assert store.audit() == everything
    assert len(store.list_alerts(open_only=False)) == 2


def test_the_retention_counts_from_the_resolution(retention_store: AlertStore) -> None:
    """An alert opened long ago but resolved recently stays; one still open is never purged."""
    store = retention_store
    store.apply_event(crowd_event(), Decide(), T0)
    store.apply_event(crowd_event(camera_id="cam-2", zone_id="plaza"), Decide("c2"), T0)
    resolved_at = T0 + 10 * RETENTION_S
    store.act(GATE, Action.RESOLVE, "op-anna", resolved_at)
    assert store.purge(resolved_at + RETENTION_S / 2) == 0
    assert store.get(GATE) is not None
    assert store.purge(resolved_at + RETENTION_S) == 1
    assert store.get(GATE) is None
    assert store.get(PLAZA) is not None


def test_without_retention_purge_keeps_everything(store: AlertStore) -> None:
    _two_alerts(store, T0)
    audit = store.audit()
    assert store.purge(time.time() + 10 * RETENTION_S) == 0
    assert store.get(GATE) is not None
    assert store.audit() == audit


def test_an_episode_that_goes_on_keeps_its_resolved_alert(retention_store: AlertStore) -> None:
    """Retention counts from the last change: a resolved alert whose gathering still sends
    events is not purged (the next event would bring it back as a new alert)."""
    store = retention_store
    store.apply_event(crowd_event(), Decide(), T0)
    store.act(GATE, Action.RESOLVE, "op-anna", T0 + 1)
    late = T0 + 1 + RETENTION_S / 2
    change = store.apply_event(crowd_event(UPDATED, seq=1, count=70.0), Decide(), late)
    assert change is not None
    assert change.alert.state is AlertState.RESOLVED  # an event does not reopen it
    assert store.purge(T0 + 1 + RETENTION_S) == 0
    kept = store.get(GATE)
    assert kept is not None
    assert kept.count == 70.0
    assert store.purge(late + RETENTION_S) == 1
    assert store.get(GATE) is None

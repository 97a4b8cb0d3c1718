"""The alert cache a Redis store keeps (store.alert_cache) and the version fields it relies on."""

from __future__ import annotations

from dataclasses import replace

import pytest

from crowdwatch.core import alerts as lifecycle
from crowdwatch.core.alerts import Action
from crowdwatch.core.routing import RouteDecision
from crowdwatch.core.types import Alert, EventType
from crowdwatch.store.alert_cache import AlertCache
from crowdwatch.store.records import VERSION_FIELDS, alert_to_fields, alert_version

from .events import T0, crowd_event

ALERT = lifecycle.open_alert(crowd_event(), RouteDecision("c1", "inside:community", 120.0), T0).alert
_UPDATE = lifecycle.apply_event(ALERT, crowd_event(EventType.GATHERING_UPDATED, seq=1), T0 + 1)
assert _UPDATE is not None
UPDATED = _UPDATE.alert
ACKED = lifecycle.act(UPDATED, Action.ACKNOWLEDGE, "op", T0 + 2).alert
ESCALATED = lifecycle.escalate(ALERT, "s1", T0 + 3, 300.0).alert


@pytest.mark.parametrize(
    "alert", [ALERT, UPDATED, ACKED, ESCALATED], ids=["new", "updated", "acked", "escalated"]
)
def test_the_version_is_what_the_record_holds(alert: Alert) -> None:
    fields = alert_to_fields(alert)
    assert alert_version(alert) == tuple(fields[f] for f in VERSION_FIELDS)


def test_every_change_of_an_alert_changes_its_version() -> None:
    versions = [alert_version(a) for a in (ALERT, UPDATED, ACKED, ESCALATED)]
    assert len(set(versions)) == len(versions)
    # Even one that left updated_at alone (another clock, the same instant) moves one field.
    same_time = [replace(a, updated_at=T0) for a in (ALERT, UPDATED, ACKED, ESCALATED)]
    assert len({alert_version(a) for a in same_time}) == len(same_time)


def test_current_only_for_the_version_cached() -> None:
    cache = AlertCache()
    cache.put(ALERT)
    assert cache.current(ALERT.id, alert_version(ALERT)) == ALERT
    assert cache.current(ALERT.id, alert_version(ACKED)) is None
    assert cache.current("other", alert_version(ALERT)) is None
    cache.put(ACKED)
    assert cache.current(ALERT.id, alert_version(ACKED)) == ACKED
    cache.forget(ALERT.id)
    assert cache.get(ALERT.id) is None


def test_the_cache_is_bounded_and_drops_the_idlest_first() -> None:
    cache = AlertCache(max_alerts=4)
    alerts = [replace(ALERT, id=f"a{i}") for i in range(5)]
    for alert in alerts[:4]:
        cache.put(alert)
    cache.put(alerts[0])  # used again: now the newest
    cache.put(alerts[4])  # over the bound: down to half, the idlest gone
    assert len(cache) == 2
    assert [a.id for a in alerts if cache.get(a.id)] == ["a0", "a4"]
    with pytest.raises(ValueError, match="max_alerts"):
        AlertCache(max_alerts=0)

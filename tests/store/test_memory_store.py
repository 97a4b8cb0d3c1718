"""What only the memory store does: forget applied event ids after the dedupe TTL, as Redis
expires its dedupe marks, so an embedded process does not grow with every event it saw."""

from __future__ import annotations

import pytest

from crowdwatch.core.types import EventType
from crowdwatch.store.memory import AppliedIds, MemoryAlertStore

from .events import T0, Decide, crowd_event

UPDATED = EventType.GATHERING_UPDATED


@pytest.mark.parametrize(
    ("applied_at", "now", "remembered"),
    [
        (100.0, 100.0, True),
        (100.0, 159.0, True),
        (100.0, 160.0, False),  # exactly the TTL later: gone, as on Redis
        (100.0, 50.0, True),  # a clock that stepped back forgets nothing
    ],
)
def test_applied_ids_expire_after_the_ttl(applied_at: float, now: float, remembered: bool) -> None:
    ids = AppliedIds(60.0)
    ids.add(["a", "b"], applied_at)
    ids.expire(now)
    assert ("a" in ids, "b" in ids, len(ids)) == (remembered, remembered, 2 if remembered else 0)


def test_expiry_goes_in_the_order_ids_were_applied() -> None:
    ids = AppliedIds(60.0)
    ids.add(["a"], 100.0)
    ids.add(["b", "a"], 130.0)  # "a" again: still dated from its first application
    ids.expire(165.0)
    assert ("a" in ids, "b" in ids) == (False, True)
    ids.expire(190.0)
    assert len(ids) == 0


def test_a_bad_ttl_is_refused() -> None:
    with pytest.raises(ValueError, match="event_dedupe_ttl_s must be positive"):
        AppliedIds(0.0)


def test_the_store_forgets_old_ids_but_still_refuses_a_late_duplicate() -> None:
    store = MemoryAlertStore(event_dedupe_ttl_s=600)
    store.apply_event(crowd_event(), Decide(), T0)
    store.apply_event(crowd_event(UPDATED, seq=1), Decide(), T0 + 1)
    later = T0 + 3600
    assert store.apply_event(crowd_event(UPDATED, seq=2), Decide(), later) is not None
    assert len(store._applied) == 1  # the two old ids are gone; only seq 2 is remembered
    assert store.apply_event(crowd_event(UPDATED, seq=1), Decide(), later + 1) is None  # stale by seq
    alert = store.get("cam-1:gate:1700000000000")
    assert alert is not None
    assert alert.last_event_seq == 2

"""What a batch of events does to the alerts, decided in memory before a store writes anything.
Pure (the core lifecycle and the standard library), shared by every AlertStore: the memory store
plans against its dicts, the Redis store against what it read under WATCH, and both then write
the plan. One code path for embedded and distributed mode.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field

from crowdwatch.core import alerts as lifecycle
from crowdwatch.core.alerts import AlertChange
from crowdwatch.core.types import Alert, CrowdEvent
from crowdwatch.store.base import RouteFn


@dataclass(slots=True)
class Write:
    """One change to store, with the alert it replaces (None: a new alert)."""

    before: Alert | None
    change: AlertChange


@dataclass(slots=True)
class BatchPlan:
    """`results` has one entry per event planned: all of them, or the prefix before `failure`
    (routing failed there). `applied` are the ids to mark applied, stale events included (as
    apply_event marks them); `writes` the changes in the order they happened."""

    results: list[AlertChange | None] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    failure: Exception | None = None


def plan_batch(
    events: Sequence[CrowdEvent],
    applied: Container[str],
    stored: Mapping[str, Alert | None],
    decide: RouteFn,
    now: float,
) -> BatchPlan:
    """Fold `events` in order into the `stored` alerts (by alert id; missing means none), as
    apply_event one by one would: an event whose id is in `applied` or earlier in the batch
    changes nothing, a later event of the same episode sees the earlier one's result. Neither
    `applied` nor `stored` is modified."""
    plan = BatchPlan()
    seen: set[str] = set()
    alerts: dict[str, Alert | None] = {}  # what the batch changed, over `stored`
    for event in events:
        event_id = event.id  # a property that formats a string: read once
        if event_id in seen or event_id in applied:
            plan.results.append(None)
            continue
        key = event.episode_key
        current = alerts[key] if key in alerts else stored.get(key)
        try:
            change = (
                lifecycle.open_alert(event, decide(event), now)
                if current is None
                else lifecycle.apply_event(current, event, now)
            )
        except Exception as exc:
            plan.failure = exc
            break
        seen.add(event_id)
        plan.applied.append(event_id)
        if change is not None:
            alerts[key] = change.alert
            plan.writes.append(Write(current, change))
        plan.results.append(change)
    return plan

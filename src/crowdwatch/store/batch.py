"""What a batch of events does to the alerts, decided in memory before a store writes anything.
Pure (the core lifecycle and the standard library), shared by every AlertStore: the memory store
plans against its dicts, the Redis store against what it read under WATCH, and both then write
the plan. One code path for embedded and distributed mode.

Notifications are conflated within a batch: a count update (an `updated` change that neither
moves the severity nor ends the gathering) followed in the same batch by another change of the
same alert is stored and audited but not announced, since the later change carries the alert's
newer figures. A console catching up on a backlog then hears each alert's latest figures once
per batch, not every figure it went through, and the store writes two stream entries less for
each such event. Openings, severity changes, ends, state changes and the last change of each
alert are always announced; at live rates a batch rarely holds two updates of one zone, so
nothing is held back there.
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
    """One change to store, with the alert it replaces (None: a new alert). `announce`: its
    notification is sent (False: a later change of the batch supersedes it; see the module)."""

    before: Alert | None
    change: AlertChange
    announce: bool = True


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
    `applied` nor `stored` is modified. Writes superseded by a later one are marked not to be
    announced (see the module)."""
    plan = BatchPlan()
    seen: set[str] = set()
    alerts: dict[str, Alert | None] = {}  # what the batch changed, over `stored`
    latest: dict[str, int] = {}  # alert id -> index of its last write so far
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
            if key in latest:
                _supersede(plan.writes, latest[key])
            latest[key] = len(plan.writes)
            plan.writes.append(Write(current, change))
        plan.results.append(change)
    return plan


def _supersede(writes: list[Write], index: int) -> None:
    """A later change of the same alert follows writes[index]: a count update is then not
    announced (the later one carries newer figures), unless it changed the severity or ended
    the gathering, which a listener may act on even when the next change undoes it."""
    write = writes[index]
    before, after = write.before, write.change.alert
    if (
        write.change.kind == "updated"
        and before is not None
        and before.severity is after.severity
        and before.gathering_ended == after.gathering_ended
    ):
        write.announce = False

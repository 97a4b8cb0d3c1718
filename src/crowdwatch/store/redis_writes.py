"""The Redis commands that store alert changes (key layout: `crowdwatch.store.redis`), as plain
argument tuples: one transaction can then carry a whole batch, packed in one go.

A batch writes each alert's record and index entries once, from what was stored to where the
batch leaves it, and appends every change to the audit and change streams in order. That ends in
the same state as writing each change in turn: the index entries depend only on the alert.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import chain

from crowdwatch.core.alerts import AlertChange
from crowdwatch.core.types import Alert, AlertState
from crowdwatch.store.batch import BatchPlan
from crowdwatch.store.records import OPTIONAL_FIELDS, alert_to_fields, audit_to_fields, change_to_fields
from crowdwatch.store.redis_keys import RedisKeys

Command = tuple[str, ...]


def change_commands(keys: RedisKeys, before: Alert | None, change: AlertChange, maxlen: int) -> list[Command]:
    """What one change writes: the alert over `before` (the stored one, None for a new alert),
    the index entries it moved in, its audit entries and its change notifications."""
    fields = alert_to_fields(change.alert)
    return [
        *alert_commands(keys, before, change.alert, fields),
        *append_commands(keys, before, change, fields, maxlen),
    ]


def batch_commands(
    keys: RedisKeys, plan: BatchPlan, now: float, dedupe_ttl_s: int, maxlen: int
) -> list[Command]:
    """What a planned batch at `now` writes: its dedupe marks (and the expiry of those older
    than `dedupe_ttl_s`), every change's audit entries and the notifications of those
    announced, and each alert once, in its last state."""
    out: list[Command] = []
    if plan.applied:
        # Marked applied in the transaction that writes the changes, so a failed attempt can be
        # retried; a stale event is marked too (as in memory). One sorted set scored by the
        # time applied: a batch's marks are two commands, not one key each.
        out.append(applied_expiry(keys, now, dedupe_ttl_s))
        stamp = repr(now)
        out.append(("ZADD", keys.applied, "NX", *chain.from_iterable((stamp, i) for i in plan.applied)))
    first: dict[str, Alert | None] = {}
    last: dict[str, tuple[Alert, dict[str, str] | None]] = {}
    for write in plan.writes:
        alert = write.change.alert
        first.setdefault(alert.id, write.before)
        if write.announce:
            fields = alert_to_fields(alert)
            out.extend(append_commands(keys, write.before, write.change, fields, maxlen))
            last[alert.id] = (alert, fields)
        else:  # superseded: the record is not needed (the alert is written in a later state)
            out.extend(audit_commands(keys, write.change))
            last[alert.id] = (alert, None)
    for alert_id, (alert, record) in last.items():
        fields = alert_to_fields(alert) if record is None else record
        out.extend(alert_commands(keys, first[alert_id], alert, fields))
    return out


def applied_expiry(keys: RedisKeys, now: float, dedupe_ttl_s: int) -> Command:
    """Forget the event ids applied `dedupe_ttl_s` or longer before `now` (as the memory
    store's `AppliedIds` does)."""
    return ("ZREMRANGEBYSCORE", keys.applied, "-inf", repr(now - dedupe_ttl_s))


def alert_commands(
    keys: RedisKeys, before: Alert | None, after: Alert, fields: Mapping[str, str]
) -> list[Command]:
    """Write `after` (whose record is `fields`) over `before`; index entries that did not move
    are left alone."""
    k, alert_id = keys, after.id
    key, created = k.alert(alert_id), repr(after.created_at)
    out: list[Command] = []
    if before is not None:
        # Optional fields that became None.
        gone = [f for f in OPTIONAL_FIELDS if f not in fields and getattr(before, f) is not None]
        if gone:
            out.append(("HDEL", key, *gone))
    out.append(("HSET", key, *_flat(fields)))
    moved = before is None or before.center_id != after.center_id
    if before is None:
        out.append(("ZADD", k.alerts, created, alert_id))
    elif moved:
        out.append(("ZREM", k.center_all(before.center_id), alert_id))
        out.append(("ZREM", k.center_open(before.center_id), alert_id))
    if moved:
        out.append(("ZADD", k.center_all(after.center_id), created, alert_id))
    if moved or before is None or before.is_open != after.is_open:
        if after.is_open:
            out.append(("ZADD", k.open, created, alert_id))
            out.append(("ZADD", k.center_open(after.center_id), created, alert_id))
        else:
            out.append(("ZREM", k.open, alert_id))
            out.append(("ZREM", k.center_open(after.center_id), alert_id))
    if after.state is AlertState.RESOLVED:
        # For retention (purge), which counts from the last change: an episode still sending
        # events keeps its resolved alert, which would otherwise come back as a new one.
        out.append(("ZADD", k.resolved, repr(after.updated_at), alert_id))
    deadline = escalation_deadline(after)
    if before is None or deadline != escalation_deadline(before):
        if deadline is None:
            out.append(("ZREM", k.escalations, alert_id))
        else:
            out.append(("ZADD", k.escalations, repr(deadline), alert_id))
    return out


def append_commands(
    keys: RedisKeys, before: Alert | None, change: AlertChange, fields: Mapping[str, str], maxlen: int
) -> list[Command]:
    """The audit entries of `change` and its notification, on the change stream and the stream
    of each center it concerns (before and after an escalation)."""
    k, alert = keys, change.alert
    audit = [audit_to_fields(entry) for entry in change.audit]
    out = _audit_entries(keys, change, audit)
    update = _flat(change_to_fields(change, fields, audit))
    trim = ("MAXLEN", "~", str(maxlen), "*")
    centers: tuple[str, ...] = (alert.center_id,)
    if before is not None and before.center_id != alert.center_id:  # escalated: both centers hear
        centers = tuple(sorted((before.center_id, alert.center_id)))
    for center in centers:
        out.append(("XADD", k.center_stream(center), *trim, *update))
    out.append(("XADD", k.changes, *trim, *update))
    return out


def audit_commands(keys: RedisKeys, change: AlertChange) -> list[Command]:
    """The audit entries of `change` alone (a change not announced)."""
    return _audit_entries(keys, change, [audit_to_fields(entry) for entry in change.audit])


def _audit_entries(keys: RedisKeys, change: AlertChange, audit: list[dict[str, str]]) -> list[Command]:
    out: list[Command] = []
    everyone, alert_audit = change.in_all_alerts_audit, keys.alert_audit(change.alert.id)
    for record in audit:
        command = ("XADD", alert_audit, "*", *chain.from_iterable(record.items()))
        if everyone:
            out.append(("XADD", keys.audit, *command[2:]))
        out.append(command)
    return out


def escalation_deadline(alert: Alert) -> float | None:
    """Its score in the escalation index; None: not in it (it would never fall due)."""
    waiting = alert.state in (AlertState.NEW, AlertState.ESCALATED) and not alert.gathering_ended
    return alert.escalate_at if waiting else None


def _flat(fields: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(chain.from_iterable(fields.items()))

"""Flat string records for alerts, audit entries and store updates, as a key-value store keeps
them (Redis hashes and stream entries). Pure: stdlib and the core only.

Floats are written with `repr`, so they read back bit for bit; optional values that are None
are left out of the record. Camera status reuses the event codec (CloudEvents JSON). JSON inside
records is written by orjson where it is installed (the same JSON, written compactly), else by
the standard library.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, get_args

try:
    import orjson
except ImportError:  # pragma: no cover - a declared dependency; the stdlib path is complete
    orjson = None  # type: ignore[assignment]

from crowdwatch.core import codec
from crowdwatch.core.alerts import AlertChange, ChangeKind
from crowdwatch.core.types import (
    Alert,
    AlertState,
    AuditEntry,
    CameraStatusEvent,
    CountMethod,
    GeoPoint,
    Severity,
)
from crowdwatch.store.base import StoreUpdate

# Written into every alert record, so that a later layout can tell old records apart.
ALERT_FORMAT: Final = "1"
# The alert fields a record leaves out while they are None (sorted).
OPTIONAL_FIELDS: Final = ("assigned_unit", "density_per_m2", "escalate_at")
_METHODS: Final[frozenset[str]] = frozenset(get_args(CountMethod))
_KINDS: Final[frozenset[str]] = frozenset(get_args(ChangeKind))
# Enum values looked up in plain dicts: an enum member's `.value` is a descriptor call, and
# every stored change writes several (records are written for every event).
_STATE_TEXT: Final = {s: s.value for s in AlertState}
_SEVERITY_TEXT: Final = {s: s.label for s in Severity}


class RecordError(ValueError):
    """A stored record that does not read back as what it should be (corrupt or foreign data)."""


# --- alerts ---------------------------------------------------------------------------------


def alert_to_fields(alert: Alert) -> dict[str, str]:
    fields = {
        "format": ALERT_FORMAT,
        "id": alert.id,
        "camera_id": alert.camera_id,
        "zone_id": alert.zone_id,
        "center_id": alert.center_id,
        "origin_center_id": alert.origin_center_id,
        "route_reason": alert.route_reason,
        "state": _STATE_TEXT[alert.state],
        "severity": _SEVERITY_TEXT[alert.severity],
        "count": repr(alert.count),
        "peak": repr(alert.peak),
        "method": alert.method,
        "lat": repr(alert.location.lat),
        "lon": repr(alert.location.lon),
        "episode_start": repr(alert.episode_start),
        "created_at": repr(alert.created_at),
        "updated_at": repr(alert.updated_at),
        "last_event_id": alert.last_event_id,
        "last_event_seq": str(alert.last_event_seq),
        "escalation_level": str(alert.escalation_level),
        "gathering_ended": "1" if alert.gathering_ended else "0",
    }
    if alert.density_per_m2 is not None:
        fields["density_per_m2"] = repr(alert.density_per_m2)
    if alert.escalate_at is not None:
        fields["escalate_at"] = repr(alert.escalate_at)
    if alert.assigned_unit is not None:
        fields["assigned_unit"] = alert.assigned_unit
    return fields


# Fields of an alert record that every change of the alert changes: an event moves
# last_event_seq, an operator action the state, an escalation the level; and each sets
# updated_at. Equal values mean the same record, so a cached copy can be checked by reading
# these alone (a store caches the alerts it writes).
VERSION_FIELDS: Final = ("last_event_seq", "state", "escalation_level", "updated_at")


def alert_version(alert: Alert) -> tuple[str, ...]:
    """The VERSION_FIELDS of `alert_to_fields(alert)`, in that order."""
    return (
        str(alert.last_event_seq),
        _STATE_TEXT[alert.state],
        str(alert.escalation_level),
        repr(alert.updated_at),
    )


def alert_from_fields(fields: Mapping[str, str]) -> Alert:
    r = _Reader(fields, "alert")
    if (fmt := r.text("format")) != ALERT_FORMAT:
        raise RecordError(f"alert {fields.get('id', '?')}: unknown record format '{fmt}'")
    method = r.text("method")
    if method not in _METHODS:
        raise RecordError(f"alert.method: unknown method '{method}'")
    try:
        location = GeoPoint(lat=r.number("lat"), lon=r.number("lon"))
    except ValueError as exc:
        raise RecordError(f"alert location: {exc}") from None
    return Alert(
        id=r.text("id"),
        camera_id=r.text("camera_id"),
        zone_id=r.text("zone_id"),
        center_id=r.text("center_id"),
        origin_center_id=r.text("origin_center_id"),
        route_reason=r.text("route_reason"),
        state=r.state("state"),
        severity=r.severity("severity"),
        count=r.number("count"),
        peak=r.number("peak"),
        density_per_m2=r.number_or_none("density_per_m2"),
        method=method,  # type: ignore[arg-type]  # checked against CountMethod just above
        location=location,
        episode_start=r.number("episode_start"),
        created_at=r.number("created_at"),
        updated_at=r.number("updated_at"),
        last_event_id=r.text("last_event_id"),
        last_event_seq=r.integer("last_event_seq"),
        escalation_level=r.integer("escalation_level"),
        escalate_at=r.number_or_none("escalate_at"),
        gathering_ended=r.flag("gathering_ended"),
        assigned_unit=r.text_or_none("assigned_unit"),
    )


# --- audit ----------------------------------------------------------------------------------


def audit_to_fields(entry: AuditEntry) -> dict[str, str]:
    fields = {
        "alert_id": entry.alert_id,
        "actor": entry.actor,
        "action": entry.action,
        "ts": repr(entry.ts),
        "to_state": _STATE_TEXT[entry.to_state],
        "note": entry.note,
        "center_id": entry.center_id,
        # A list of pairs, not an object: keeps the tuple's order exactly.
        "extra": _dumps([list(pair) for pair in entry.extra]),
    }
    if entry.from_state is not None:
        fields["from_state"] = _STATE_TEXT[entry.from_state]
    return fields


def audit_from_fields(fields: Mapping[str, str]) -> AuditEntry:
    r = _Reader(fields, "audit")
    from_state = r.text_or_none("from_state")
    return AuditEntry(
        alert_id=r.text("alert_id"),
        actor=r.text("actor"),
        action=r.text("action"),
        ts=r.number("ts"),
        from_state=None if from_state is None else r.state("from_state"),
        to_state=r.state("to_state"),
        note=r.text("note"),
        center_id=r.text("center_id"),
        extra=_pairs(r.text("extra")),
    )


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    obj = _json(text, "audit.extra")
    if not isinstance(obj, list):
        raise RecordError("audit.extra: expected a list of [key, value] pairs")
    out: list[tuple[str, str]] = []
    for item in obj:
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)):
            raise RecordError(f"audit.extra: expected a [key, value] pair of strings, got {item!r:.40}")
        out.append((item[0], item[1]))
    return tuple(out)


# --- store updates (stream entries) ---------------------------------------------------------


def update_to_fields(update: StoreUpdate) -> dict[str, str]:
    """One stream entry for an alert change or a camera status."""
    if isinstance(update, CameraStatusEvent):
        return {"type": "camera", "event": codec.encode(update).decode("utf-8")}
    return change_to_fields(update, alert_to_fields(update.alert), [audit_to_fields(e) for e in update.audit])


def change_to_fields(
    change: AlertChange, alert_fields: Mapping[str, str], audit_fields: Sequence[Mapping[str, str]]
) -> dict[str, str]:
    """`update_to_fields` of an alert change whose alert and audit records are at hand (a store
    that writes those records too serialises each once)."""
    return {
        "type": "alert",
        "kind": change.kind,
        "alert": _dumps(alert_fields),
        "audit": _dumps(audit_fields),
    }


def _dumps(obj: Any) -> str:
    if orjson is not None:
        try:
            return orjson.dumps(obj).decode("utf-8")
        except TypeError:
            pass  # e.g. a lone surrogate, which orjson refuses: the stdlib writes it as before
    return json.dumps(obj, ensure_ascii=False)


def update_from_fields(fields: Mapping[str, str]) -> StoreUpdate:
    r = _Reader(fields, "update")
    kind_of_update = r.text("type")
    if kind_of_update == "camera":
        return camera_status_from_json(r.text("event"))
    if kind_of_update != "alert":
        raise RecordError(f"update.type: unknown update type '{kind_of_update}'")
    kind = r.text("kind")
    if kind not in _KINDS:
        raise RecordError(f"update.kind: unknown change kind '{kind}'")
    audit = _json(r.text("audit"), "update.audit")
    if not isinstance(audit, list):
        raise RecordError("update.audit: expected a list of audit records")
    return AlertChange(
        alert=alert_from_fields(_str_map(_json(r.text("alert"), "update.alert"), "update.alert")),
        audit=tuple(audit_from_fields(_str_map(e, "update.audit[]")) for e in audit),
        kind=kind,  # type: ignore[arg-type]  # checked against ChangeKind just above
    )


def camera_status_from_json(text: str) -> CameraStatusEvent:
    try:
        event = codec.decode(text.encode("utf-8"))
    except codec.DecodeError as exc:
        raise RecordError(f"camera status: {exc}") from None
    if not isinstance(event, CameraStatusEvent):
        raise RecordError(f"camera status: got a {event.type.value} event")
    return event


# --- reading helpers ------------------------------------------------------------------------


def _json(text: str, where: str) -> object:
    try:
        obj: object = json.loads(text)
    except ValueError as exc:
        raise RecordError(f"{where}: not valid JSON: {exc}") from None
    return obj


def _str_map(obj: object, where: str) -> dict[str, str]:
    if not isinstance(obj, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in obj.items()
    ):
        raise RecordError(f"{where}: expected an object of strings")
    return obj


class _Reader:
    """Typed field access whose errors name the record and the field."""

    def __init__(self, fields: Mapping[str, str], what: str) -> None:
        self._fields = fields
        self._what = what

    def _bad(self, name: str, want: str) -> RecordError:
        return RecordError(f"{self._what}.{name}: expected {want}, got {self._fields[name]!r:.40}")

    def text(self, name: str) -> str:
        try:
            return self._fields[name]
        except KeyError:
            raise RecordError(f"{self._what}.{name}: missing") from None

    def text_or_none(self, name: str) -> str | None:
        return self._fields.get(name)

    def number(self, name: str) -> float:
        text = self.text(name)
        try:
            return float(text)
        except ValueError:
            raise self._bad(name, "a number") from None

    def number_or_none(self, name: str) -> float | None:
        return None if name not in self._fields else self.number(name)

    def integer(self, name: str) -> int:
        text = self.text(name)
        try:
            return int(text)
        except ValueError:
            raise self._bad(name, "an integer") from None

    def flag(self, name: str) -> bool:
        text = self.text(name)
        if text not in ("0", "1"):
            raise self._bad(name, "0 or 1")
        return text == "1"

    def state(self, name: str) -> AlertState:
        try:
            return AlertState(self.text(name))
        except ValueError:
            raise self._bad(name, "an alert state") from None

    def severity(self, name: str) -> Severity:
        try:
            return Severity.parse(self.text(name))
        except KeyError:
            raise self._bad(name, "a severity") from None

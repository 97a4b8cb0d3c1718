"""`--events-out FILE`: every event and every alert change as one JSON object per line."""

from __future__ import annotations

import json
import threading
from dataclasses import fields
from enum import Enum
from pathlib import Path
from typing import IO, Any

from crowdwatch.bus.base import Message
from crowdwatch.core.alerts import AlertChange
from crowdwatch.core.types import Alert, AuditEntry, GeoPoint


def _plain(value: object) -> Any:
    if isinstance(value, Enum):
        return value.name.lower() if isinstance(value.value, int) else value.value
    if isinstance(value, GeoPoint):
        return {"lat": value.lat, "lon": value.lon}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def alert_json(alert: Alert) -> dict[str, Any]:
    return {f.name: _plain(getattr(alert, f.name)) for f in fields(alert)}


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {f.name: _plain(getattr(entry, f.name)) for f in fields(entry)}


class EventsLog:
    """Appends to the file; lines are flushed at once so a reader can follow the file live."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def message(self, msg: Message) -> None:
        """A bus message (a CloudEvent); written as the event object itself."""
        self._write({"record": "event", "topic": msg.topic, "event": json.loads(msg.value)})

    def alert_change(self, change: AlertChange) -> None:
        self._write(
            {
                "record": "alert",
                "change": change.kind,
                "alert": alert_json(change.alert),
                "audit": [audit_json(a) for a in change.audit],
            }
        )

    def _write(self, obj: dict[str, Any]) -> None:
        line = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()

"""The alerts a store wrote or read last, each with its version (`records.VERSION_FIELDS`): a
transaction reads those few fields of a cached alert instead of its whole record, and reads the
record only when they differ. Pure (no I/O); bounded, oldest entries dropped first."""

from __future__ import annotations

from typing import Final

from crowdwatch.core.types import Alert
from crowdwatch.store.records import alert_version

# ~0.7-1 kB per alert (measured with tracemalloc): under 50 MB, and far more alerts than a
# consumer sees events for at once (a batch touches at most one per event). A miss costs only a
# full read.
DEFAULT_MAX_ALERTS: Final = 50_000

Version = tuple[str, ...]


class AlertCache:
    def __init__(self, max_alerts: int = DEFAULT_MAX_ALERTS) -> None:
        if max_alerts < 1:
            raise ValueError(f"max_alerts must be at least 1, got {max_alerts}")
        self._max = max_alerts
        self._alerts: dict[str, tuple[Version, Alert]] = {}

    def __len__(self) -> int:
        return len(self._alerts)

    def get(self, alert_id: str) -> tuple[Version, Alert] | None:
        return self._alerts.get(alert_id)

    def put(self, alert: Alert) -> None:
        alerts = self._alerts
        alerts.pop(alert.id, None)  # re-inserted last: the oldest entries are the idlest
        alerts[alert.id] = (alert_version(alert), alert)
        if len(alerts) > self._max:
            for alert_id in list(alerts)[: len(alerts) - self._max // 2]:
                del alerts[alert_id]

    def forget(self, alert_id: str) -> None:
        self._alerts.pop(alert_id, None)

    def current(self, alert_id: str, version: Version) -> Alert | None:
        """The cached alert if it has `version` (as read from the store), else None."""
        entry = self._alerts.get(alert_id)
        return entry[1] if entry is not None and entry[0] == version else None

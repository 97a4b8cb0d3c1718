"""The Redis key layout of the alert store (listed in `crowdwatch.store.redis`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """The key layout (see `crowdwatch.store.redis`)."""

    prefix: str

    def alert(self, alert_id: str) -> str:
        return f"{self.prefix}:alert:{alert_id}"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}:alerts"

    @property
    def open(self) -> str:
        return f"{self.prefix}:open"

    def center_all(self, center_id: str) -> str:
        return f"{self.prefix}:center:{center_id}:all"

    def center_open(self, center_id: str) -> str:
        return f"{self.prefix}:center:{center_id}:open"

    @property
    def resolved(self) -> str:
        return f"{self.prefix}:resolved"

    @property
    def escalations(self) -> str:
        return f"{self.prefix}:escalations"

    @property
    def applied(self) -> str:
        return f"{self.prefix}:applied"

    def quarantine(self, alert_id: str, tag: str) -> str:
        return f"{self.prefix}:quarantine:{alert_id}:{tag}"

    @property
    def audit(self) -> str:
        return f"{self.prefix}:audit"

    def alert_audit(self, alert_id: str) -> str:
        return f"{self.prefix}:audit:{alert_id}"

    @property
    def changes(self) -> str:
        return f"{self.prefix}:changes"

    def center_stream(self, center_id: str) -> str:
        return f"{self.prefix}:stream:center:{center_id}"

    @property
    def cameras(self) -> str:
        return f"{self.prefix}:cameras"

    @property
    def camera_ts(self) -> str:
        return f"{self.prefix}:camera-ts"

"""Event builders and a routing function that counts its calls, for the store tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from crowdwatch.core.routing import RouteDecision
from crowdwatch.core.types import CrowdEvent
from event_builders import T0 as T0
from event_builders import camera_event as camera_event
from event_builders import crowd_event as crowd_event


@dataclass
class Decide:
    """A routing function that counts its calls."""

    center: str = "c1"
    sla_s: float = 120.0
    calls: list[str] = field(default_factory=list)

    def __call__(self, event: CrowdEvent) -> RouteDecision:
        self.calls.append(event.id)
        return RouteDecision(self.center, "inside:community", self.sla_s)

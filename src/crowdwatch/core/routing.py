"""Which operations center gets an alert (DESIGN 5). Pure: the geometry is asked of an injected
`GeoIndex`, the hierarchy is plain data.

Order of rules:
1. an explicit camera -> center override wins (`override`);
2. the deepest center whose boundary holds the location (`inside:community`);
3. outside every boundary: the nearest street center within `max_km` (`nearest-street:1.3km`);
4. else the nearest district (`fallback:district`); without geometry to go by, the only district
   (`fallback:district`) or, among several, the first by id (`fallback:district:first`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol, get_args

from crowdwatch.core.types import GeoPoint

Level = Literal["district", "street", "community"]
LEVELS: Final[tuple[Level, ...]] = get_args(Level)
DEPTH: Final[Mapping[str, int]] = {level: i for i, level in enumerate(LEVELS)}


@dataclass(frozen=True, slots=True)
class CenterInfo:
    """One operations center as routing and escalation need it (no geometry, no contacts)."""

    id: str
    name: str
    level: Level
    parent: str | None
    ack_sla_s: float

    def __post_init__(self) -> None:
        if self.level not in DEPTH:
            raise ValueError(f"center '{self.id}': unknown level '{self.level}' (expected one of {LEVELS})")
        if not self.ack_sla_s > 0 or not math.isfinite(self.ack_sla_s):  # NaN passes `<= 0`
            raise ValueError(
                f"center '{self.id}': ack_sla_s must be positive and finite, got {self.ack_sla_s}"
            )


class CenterDirectory:
    """The center hierarchy: district -> street -> community. Immutable after construction."""

    def __init__(self, centers: Iterable[CenterInfo]) -> None:
        self._centers: dict[str, CenterInfo] = {}
        for c in centers:
            if c.id in self._centers:
                raise ValueError(f"center id '{c.id}' appears twice")
            self._centers[c.id] = c
        for c in self._centers.values():
            if c.parent is None:
                if c.level != "district":
                    raise ValueError(f"center '{c.id}' ({c.level}) needs a parent")
                continue
            parent = self._centers.get(c.parent)
            if parent is None:
                raise ValueError(f"center '{c.id}' has parent '{c.parent}', which is not a center")
            # Strictly shallower parents also rule out cycles.
            if DEPTH[parent.level] >= DEPTH[c.level]:
                raise ValueError(
                    f"center '{c.id}' ({c.level}) cannot have parent '{parent.id}' ({parent.level})"
                )
        self._districts = tuple(sorted(c.id for c in self._centers.values() if c.level == "district"))
        if not self._districts:
            raise ValueError("at least one district center is needed (the top of the hierarchy)")

    def __contains__(self, center_id: object) -> bool:
        return center_id in self._centers

    def __iter__(self) -> Iterator[CenterInfo]:
        return iter(self._centers.values())

    def get(self, center_id: str) -> CenterInfo:
        try:
            return self._centers[center_id]
        except KeyError:
            raise KeyError(f"unknown center '{center_id}'") from None

    def parent_of(self, center_id: str) -> str | None:
        return self.get(center_id).parent

    def ancestors(self, center_id: str) -> tuple[str, ...]:
        """Parents from the nearest up to the district, not including `center_id`."""
        out: list[str] = []
        parent = self.parent_of(center_id)
        while parent is not None:
            out.append(parent)
            parent = self.parent_of(parent)
        return tuple(out)

    def descendants(self, center_id: str) -> tuple[str, ...]:
        """Every center below `center_id` (what a supervisor there may see), sorted by id."""
        self.get(center_id)
        return tuple(sorted(c.id for c in self._centers.values() if center_id in self.ancestors(c.id)))

    @property
    def districts(self) -> tuple[str, ...]:
        return self._districts


class GeoIndex(Protocol):
    """Geometry of the centers' boundaries."""

    def containing(self, point: GeoPoint) -> list[str]:
        """Ids of every center whose boundary holds `point` (border included), best first:
        deeper levels first, then the implementation's tie-break (e.g. smaller area)."""
        ...

    def nearest(self, point: GeoPoint, level: str, max_km: float | None) -> tuple[str, float] | None:
        """The center of `level` nearest to `point` and its distance in km, or None when none is
        within `max_km` (None = no limit)."""
        ...


@dataclass(frozen=True, slots=True)
class RouteDecision:
    center_id: str
    reason: str
    # The routed center's acknowledgement SLA, so whoever opens the alert needs no second lookup.
    ack_sla_s: float


@dataclass(frozen=True, slots=True)
class Router:
    """Routing decisions for cameras. `overrides` maps camera id -> center id; `camera_locations`
    is used only when an event carries no location (camera status events may not)."""

    directory: CenterDirectory
    geo: GeoIndex
    max_km: float
    overrides: Mapping[str, str] = field(default_factory=dict)
    camera_locations: Mapping[str, GeoPoint] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for camera_id, center_id in self.overrides.items():
            if center_id not in self.directory:
                raise ValueError(f"camera '{camera_id}' is routed to unknown center '{center_id}'")

    def route(self, camera_id: str, location: GeoPoint | None) -> RouteDecision:
        override = self.overrides.get(camera_id)
        if override is not None:
            return self._decide(override, "override")
        point = location if location is not None else self.camera_locations.get(camera_id)
        if point is not None:
            inside = [c for c in self.geo.containing(point) if c in self.directory]
            if inside:
                # max() keeps the first of equal depth, i.e. the index's own tie-break.
                best = max(inside, key=lambda c: DEPTH[self.directory.get(c).level])
                return self._decide(best, f"inside:{self.directory.get(best).level}")
            street = self.geo.nearest(point, "street", self.max_km)
            if street is not None and street[0] in self.directory:
                return self._decide(street[0], f"nearest-street:{street[1]:.1f}km")
            district = self.geo.nearest(point, "district", None)
            if district is not None and district[0] in self.directory:
                return self._decide(district[0], "fallback:district")
        districts = self.directory.districts
        # No geometry to go by: the only district, else a stable choice that the reason flags.
        return self._decide(
            districts[0], "fallback:district" if len(districts) == 1 else "fallback:district:first"
        )

    def _decide(self, center_id: str, reason: str) -> RouteDecision:
        return RouteDecision(center_id, reason, self.directory.get(center_id).ack_sla_s)

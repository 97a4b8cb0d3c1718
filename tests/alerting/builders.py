"""Builders for the alerting tests: events (from event_builders), a fake clock, a small map.

The map (lon, lat boxes; see `WORLD`):

    d1 district 121.40..121.50 x 31.20..31.30     d2 district 121.60..121.70 (same lats)
      s1 street 121.40..121.45 (whole height)        (no streets)
        c1 community 121.40..121.42 x 31.20..31.22
      s2 street 121.45..121.48 (smaller than s1; shares the border lon 121.45 with s1)
      121.48..121.50 is district only
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crowdwatch.alerting.geoindex import Boundary, ShapelyGeoIndex
from crowdwatch.core.routing import CenterDirectory, CenterInfo, Router
from crowdwatch.core.types import GeoPoint
from event_builders import T0 as T0
from event_builders import camera_event as camera_event
from event_builders import crowd_event as crowd_event

IN_C1 = GeoPoint(lat=31.21, lon=121.41)  # where crowd_event's camera stands
IN_S1 = GeoPoint(lat=31.25, lon=121.43)
IN_S2 = GeoPoint(lat=31.25, lon=121.46)
ON_S1_S2_BORDER = GeoPoint(lat=31.25, lon=121.45)
IN_D1_ONLY = GeoPoint(lat=31.25, lon=121.49)
WEST_OF_S1_1KM = GeoPoint(lat=31.25, lon=121.39)  # ~0.95 km from s1
WEST_OF_S1_5KM = GeoPoint(lat=31.25, lon=121.35)  # ~4.8 km from s1 and d1
EAST_OF_D2 = GeoPoint(lat=31.25, lon=121.72)  # ~1.9 km from d2, ~23 km from s2


def box(lon0: float, lat0: float, lon1: float, lat1: float) -> dict[str, Any]:
    ring = [[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]
    return {"type": "Polygon", "coordinates": [ring]}


@dataclass(frozen=True)
class Place:
    info: CenterInfo
    boundary: dict[str, Any]


WORLD = [
    Place(CenterInfo("d1", "District 1", "district", None, 600), box(121.40, 31.20, 121.50, 31.30)),
    Place(CenterInfo("d2", "District 2", "district", None, 600), box(121.60, 31.20, 121.70, 31.30)),
    Place(CenterInfo("s1", "Street 1", "street", "d1", 300), box(121.40, 31.20, 121.45, 31.30)),
    Place(CenterInfo("s2", "Street 2", "street", "d1", 300), box(121.45, 31.20, 121.48, 31.30)),
    Place(CenterInfo("c1", "Community 1", "community", "s1", 120), box(121.40, 31.20, 121.42, 31.22)),
]


def world_index() -> ShapelyGeoIndex:
    return ShapelyGeoIndex(Boundary(p.info.id, p.info.level, p.boundary) for p in WORLD)


def world_router(**kwargs: Any) -> Router:
    return Router(CenterDirectory(p.info for p in WORLD), world_index(), max_km=2.0, **kwargs)


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

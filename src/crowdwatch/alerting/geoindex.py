"""`GeoIndex` over the centers' GeoJSON boundaries, with shapely 2 and an STRtree.

- A point on a border counts as inside (`intersects`, which for a point is `covers`).
- Among several containing centers: deepest level first, then smallest area, then id. Areas are
  compared in square degrees, which orders neighbouring polygons correctly (they share a latitude
  scale) without a projection.
- Distances are great-circle (haversine, km) from the point to the nearest point of a boundary.
  That nearest point is found in a local equirectangular projection centred on the query point:
  exact at the centre, off by well under 1 % within the tens of km that routing cares about.
- Boundaries that cross the antimeridian are not supported (no such city centers).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry import Point, box, shape
from shapely.ops import nearest_points

from crowdwatch.core.routing import DEPTH
from crowdwatch.core.types import GeoPoint

if TYPE_CHECKING:
    from crowdwatch.config.centers import CenterConfig

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius
KM_PER_DEG = EARTH_RADIUS_KM * math.pi / 180.0


def haversine_km(a: GeoPoint, b: GeoPoint) -> float:
    phi1, phi2 = math.radians(a.lat), math.radians(b.lat)
    dphi, dlmb = phi2 - phi1, math.radians(b.lon - a.lon)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True, slots=True)
class Boundary:
    center_id: str
    level: str
    geojson: Mapping[str, Any]


class ShapelyGeoIndex:
    def __init__(self, boundaries: Iterable[Boundary]) -> None:
        self._ids: list[str] = []
        self._levels: list[str] = []
        geoms = []
        for b in boundaries:
            if b.level not in DEPTH:
                raise ValueError(f"center '{b.center_id}': unknown level '{b.level}'")
            geom = shape(b.geojson)
            if not geom.is_valid:
                # A self-intersecting boundary gives wrong answers silently; refuse it at startup.
                why = shapely.is_valid_reason(geom)
                raise ValueError(f"center '{b.center_id}': boundary is not a valid polygon ({why})")
            self._ids.append(b.center_id)
            self._levels.append(b.level)
            geoms.append(geom)
        self._geoms = np.array(geoms, dtype=object)
        shapely.prepare(self._geoms)
        self._areas = shapely.area(self._geoms) if geoms else np.zeros(0)
        self._tree = shapely.STRtree(self._geoms)

    @classmethod
    def from_centers(cls, centers: Iterable[CenterConfig]) -> ShapelyGeoIndex:
        return cls(Boundary(c.id, c.level, c.boundary) for c in centers)

    def containing(self, point: GeoPoint) -> list[str]:
        hits = self._tree.query(Point(point.lon, point.lat), predicate="intersects")
        order = sorted(
            (int(i) for i in hits),
            key=lambda i: (-DEPTH[self._levels[i]], float(self._areas[i]), self._ids[i]),
        )
        return [self._ids[i] for i in order]

    def nearest(self, point: GeoPoint, level: str, max_km: float | None) -> tuple[str, float] | None:
        if max_km is None:
            candidates: Iterable[int] = range(len(self._ids))
        else:
            candidates = sorted(
                {int(i) for area in _search_boxes(point, max_km) for i in self._tree.query(area)}
            )
        best: tuple[float, str] | None = None
        for i in candidates:
            if self._levels[i] != level:
                continue
            km = self._distance_km(point, i)
            if max_km is not None and km > max_km:
                continue
            if best is None or (km, self._ids[i]) < best:
                best = (km, self._ids[i])
        return None if best is None else (best[1], best[0])

    def _distance_km(self, point: GeoPoint, i: int) -> float:
        geom = self._geoms[i]
        origin = Point(point.lon, point.lat)
        if geom.intersects(origin):
            return 0.0
        kx = KM_PER_DEG * math.cos(math.radians(point.lat))

        def to_local(xy: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            # Longitude differences wrapped into [-180, 180): a center just across the
            # antimeridian is a few metres east, not 360 degrees west.
            dlon = (xy[:, 0] - point.lon + 180.0) % 360.0 - 180.0
            return np.column_stack((dlon * kx, (xy[:, 1] - point.lat) * KM_PER_DEG))

        near, _ = nearest_points(shapely.transform(geom, to_local), Point(0.0, 0.0))
        lon = (point.lon + (near.x / kx if kx > 0 else 0.0) + 180.0) % 360.0 - 180.0
        lat = max(-90.0, min(90.0, point.lat + near.y / KM_PER_DEG))
        return haversine_km(point, GeoPoint(lat=lat, lon=lon))


def _search_boxes(point: GeoPoint, km: float) -> list[Any]:
    """Lon/lat boxes surely holding everything within `km` (pre-filter for the STRtree): one,
    or its part beyond the antimeridian shifted by 360 degrees as well; every longitude when
    the circle reaches a pole."""
    # 10 % margin: the boxes are only a pre-filter, exact distances are checked afterwards.
    dlat = 1.1 * km / KM_PER_DEG
    south, north = max(-90.0, point.lat - dlat), min(90.0, point.lat + dlat)
    coslat = math.cos(math.radians(point.lat))
    if coslat < 1e-6 or point.lat + dlat >= 90.0 or point.lat - dlat <= -90.0:
        return [box(-180.0, south, 180.0, north)]
    dlon = min(180.0, dlat / coslat)
    west, east = point.lon - dlon, point.lon + dlon
    boxes = [box(max(west, -180.0), south, min(east, 180.0), north)]
    if west < -180.0:
        boxes.append(box(west + 360.0, south, 180.0, north))
    if east > 180.0:
        boxes.append(box(-180.0, south, east - 360.0, north))
    return boxes

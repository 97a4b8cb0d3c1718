"""ShapelyGeoIndex on a small map, and routing end to end with real geometry."""

from __future__ import annotations

import pytest

from crowdwatch.alerting.geoindex import Boundary, ShapelyGeoIndex, haversine_km
from crowdwatch.core.types import GeoPoint

from .builders import (
    EAST_OF_D2,
    IN_C1,
    IN_D1_ONLY,
    IN_S1,
    IN_S2,
    ON_S1_S2_BORDER,
    WEST_OF_S1_1KM,
    WEST_OF_S1_5KM,
    box,
    world_index,
    world_router,
)


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        (IN_C1, ["c1", "s1", "d1"]),
        (IN_S1, ["s1", "d1"]),
        (IN_S2, ["s2", "d1"]),
        (ON_S1_S2_BORDER, ["s2", "s1", "d1"]),  # both hold it; s2 is smaller
        (IN_D1_ONLY, ["d1"]),
        (GeoPoint(lat=31.20, lon=121.40), ["c1", "s1", "d1"]),  # a shared corner
        (WEST_OF_S1_1KM, []),
    ],
    ids=["community", "street", "street-2", "shared-border", "district-only", "corner", "outside"],
)
def test_containing(point: GeoPoint, expected: list[str]) -> None:
    assert world_index().containing(point) == expected


def test_equal_areas_tie_break_by_id() -> None:
    index = ShapelyGeoIndex(
        [
            Boundary("b", "street", box(0.0, 0.0, 1.0, 1.0)),
            Boundary("a", "street", box(1.0, 0.0, 2.0, 1.0)),
        ]
    )
    assert index.containing(GeoPoint(lat=0.5, lon=1.0)) == ["a", "b"]


def test_nearest_street_distance_is_in_km() -> None:
    hit = world_index().nearest(WEST_OF_S1_1KM, "street", 2.0)
    assert hit is not None
    center, km = hit
    assert center == "s1"
    # 0.01 degree of longitude at 31.25 N, along the parallel.
    assert km == pytest.approx(haversine_km(WEST_OF_S1_1KM, GeoPoint(lat=31.25, lon=121.40)), rel=1e-3)
    assert km == pytest.approx(0.9505, abs=0.002)


def test_nearest_point_is_on_the_boundary_not_a_vertex() -> None:
    index = ShapelyGeoIndex([Boundary("s", "street", box(0.0, 0.0, 1.0, 1.0))])
    hit = index.nearest(GeoPoint(lat=0.5, lon=-0.01), "street", None)
    assert hit is not None
    assert hit[1] == pytest.approx(1.112, abs=0.002)


@pytest.mark.parametrize(
    ("point", "level", "max_km", "expected"),
    [
        (WEST_OF_S1_5KM, "street", 2.0, None),
        (WEST_OF_S1_5KM, "street", 10.0, "s1"),
        (WEST_OF_S1_5KM, "district", None, "d1"),
        (EAST_OF_D2, "district", None, "d2"),
        (EAST_OF_D2, "street", 2.0, None),
        (IN_S2, "street", 0.0, "s2"),  # inside: distance 0
        (IN_S2, "community", None, "c1"),
    ],
)
def test_nearest(point: GeoPoint, level: str, max_km: float | None, expected: str | None) -> None:
    hit = world_index().nearest(point, level, max_km)
    assert (hit[0] if hit else None) == expected


def test_invalid_polygon_is_refused() -> None:
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    with pytest.raises(ValueError, match="center 'x': boundary is not a valid polygon"):
        ShapelyGeoIndex([Boundary("x", "street", bowtie)])


def test_multipolygon_boundaries() -> None:
    two = {
        "type": "MultiPolygon",
        "coordinates": [box(0, 0, 1, 1)["coordinates"], box(5, 5, 6, 6)["coordinates"]],
    }
    index = ShapelyGeoIndex([Boundary("m", "district", two)])
    assert index.containing(GeoPoint(lat=5.5, lon=5.5)) == ["m"]


def test_empty_index() -> None:
    index = ShapelyGeoIndex([])
    assert index.containing(IN_C1) == []
    assert index.nearest(IN_C1, "street", None) is None


def test_haversine() -> None:
    # One degree of latitude is ~111.2 km everywhere.
    assert haversine_km(GeoPoint(10.0, 20.0), GeoPoint(11.0, 20.0)) == pytest.approx(111.195, rel=1e-4)
    assert haversine_km(GeoPoint(0.0, 0.0), GeoPoint(0.0, 0.0)) == 0.0


# --- routing with real geometry: the DESIGN 5 table ----------------------------------------


@pytest.mark.parametrize(
    ("camera", "point", "center", "reason"),
    [
        ("cam", IN_C1, "c1", "inside:community"),
        ("cam", IN_S1, "s1", "inside:street"),
        ("cam", ON_S1_S2_BORDER, "s2", "inside:street"),
        ("cam", IN_D1_ONLY, "d1", "inside:district"),
        ("cam-x", IN_C1, "s2", "override"),
        ("cam", WEST_OF_S1_1KM, "s1", "nearest-street:1.0km"),
        ("cam", WEST_OF_S1_5KM, "d1", "fallback:district"),
        ("cam", EAST_OF_D2, "d2", "fallback:district"),
    ],
    ids=[
        "community",
        "street",
        "shared-border",
        "district",
        "override",
        "near-street",
        "beyond-max-km",
        "nearest-district",
    ],
)
def test_routing_with_shapely(camera: str, point: GeoPoint, center: str, reason: str) -> None:
    decision = world_router(overrides={"cam-x": "s2"}).route(camera, point)
    assert (decision.center_id, decision.reason) == (center, reason)


def _square(lon0: float, lat0: float, lon1: float, lat1: float) -> dict[str, object]:
    ring = [[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]
    return {"type": "Polygon", "coordinates": [ring]}


# Taveuni, Fiji, where the 180th meridian crosses the island: a street just west of the line, a
# camera just east of it; neither boundary crosses the antimeridian.
FIJI_STREET = _square(-179.995, -16.81, -179.99, -16.80)
FIJI_CAMERA = GeoPoint(lat=-16.805, lon=179.999)


@pytest.mark.parametrize("max_km", [2.0, None])
def test_nearest_across_the_antimeridian(max_km: float | None) -> None:
    """Longitudes did not wrap: the street 0.64 km away was missed within 2 km, and measured
    to its far edge (1.17 km) without a limit."""
    index = ShapelyGeoIndex([Boundary("st", "street", FIJI_STREET)])
    found = index.nearest(FIJI_CAMERA, "street", max_km)
    assert found is not None
    center, km = found
    assert center == "st"
    assert km == pytest.approx(haversine_km(FIJI_CAMERA, GeoPoint(lat=-16.805, lon=-179.995)), abs=0.01)


def test_nearest_across_a_pole() -> None:
    index = ShapelyGeoIndex([Boundary("st", "street", _square(-101, 89.997, -99, 89.998))])
    found = index.nearest(GeoPoint(lat=89.999, lon=100.0), "street", 2.0)
    assert found is not None
    assert found[1] < 1.0

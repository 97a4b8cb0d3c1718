"""Routing decisions (DESIGN 5) against a table-driven fake GeoIndex, and the hierarchy."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from crowdwatch.core.routing import CenterDirectory, CenterInfo, Router
from crowdwatch.core.types import GeoPoint

CENTERS = [
    CenterInfo("d1", "District One", "district", None, 600),
    CenterInfo("d2", "District Two", "district", None, 600),
    CenterInfo("s1", "Street One", "street", "d1", 300),
    CenterInfo("s2", "Street Two", "street", "d1", 300),
    CenterInfo("c1", "Community One", "community", "s1", 120),
]

# Named places; the fake index answers by name.
IN_C1 = GeoPoint(31.01, 121.01)
IN_S2_ONLY = GeoPoint(31.02, 121.02)
BORDER_S1_S2 = GeoPoint(31.03, 121.03)
IN_D1_ONLY = GeoPoint(31.04, 121.04)
NEAR_S1 = GeoPoint(31.05, 121.05)
FAR_NEAR_D2 = GeoPoint(31.06, 121.06)


@dataclass
class FakeGeo:
    """containing: point -> ids best first; streets/districts: point -> (id, km) nearest."""

    containing_map: dict[GeoPoint, list[str]] = field(default_factory=dict)
    nearest_map: dict[tuple[GeoPoint, str], tuple[str, float]] = field(default_factory=dict)
    calls: list[tuple[str, str, float | None]] = field(default_factory=list)

    def containing(self, point: GeoPoint) -> list[str]:
        return self.containing_map.get(point, [])

    def nearest(self, point: GeoPoint, level: str, max_km: float | None) -> tuple[str, float] | None:
        self.calls.append(("nearest", level, max_km))
        hit = self.nearest_map.get((point, level))
        if hit is None or (max_km is not None and hit[1] > max_km):
            return None
        return hit


GEO = FakeGeo(
    containing_map={
        IN_C1: ["c1", "s1", "d1"],
        IN_S2_ONLY: ["d1", "s2"],  # deliberately not best-first: the router picks the deepest
        BORDER_S1_S2: ["s2", "s1", "d1"],  # the index's tie-break already chose s2
        IN_D1_ONLY: ["d1"],
    },
    nearest_map={
        (NEAR_S1, "street"): ("s1", 1.26),
        (NEAR_S1, "district"): ("d1", 1.26),
        (FAR_NEAR_D2, "street"): ("s2", 25.0),
        (FAR_NEAR_D2, "district"): ("d2", 3.0),
    },
)


@pytest.fixture
def router() -> Router:
    return Router(CenterDirectory(CENTERS), GEO, max_km=2.0, overrides={"cam-override": "s2"})


@pytest.mark.parametrize(
    ("camera", "point", "center", "reason"),
    [
        ("cam", IN_C1, "c1", "inside:community"),
        ("cam", IN_S2_ONLY, "s2", "inside:street"),
        ("cam", BORDER_S1_S2, "s2", "inside:street"),
        ("cam", IN_D1_ONLY, "d1", "inside:district"),
        ("cam-override", IN_C1, "s2", "override"),
        ("cam", NEAR_S1, "s1", "nearest-street:1.3km"),
        ("cam", FAR_NEAR_D2, "d2", "fallback:district"),
        ("cam", None, "d1", "fallback:district:first"),
    ],
    ids=[
        "community",
        "street-no-community",
        "shared-border",
        "district-only",
        "override",
        "outside-near-street",
        "outside-beyond-max-km",
        "no-location",
    ],
)
def test_route(router: Router, camera: str, point: GeoPoint | None, center: str, reason: str) -> None:
    decision = router.route(camera, point)
    assert (decision.center_id, decision.reason) == (center, reason)
    assert decision.ack_sla_s == router.directory.get(center).ack_sla_s


def test_street_search_uses_max_km_and_district_search_is_unbounded() -> None:
    geo = FakeGeo(nearest_map={(FAR_NEAR_D2, "district"): ("d2", 300.0)})
    decision = Router(CenterDirectory(CENTERS), geo, max_km=0.5).route("cam", FAR_NEAR_D2)
    assert decision.center_id == "d2"
    assert geo.calls == [("nearest", "street", 0.5), ("nearest", "district", None)]


def test_camera_location_map_is_used_when_the_event_has_none() -> None:
    r = Router(CenterDirectory(CENTERS), GEO, max_km=2.0, camera_locations={"cam-9": IN_C1})
    assert r.route("cam-9", None).center_id == "c1"


def test_only_district_is_the_fallback_without_geometry() -> None:
    directory = CenterDirectory([CenterInfo("d1", "D", "district", None, 60)])
    assert Router(directory, FakeGeo(), max_km=2.0).route("cam", None).reason == "fallback:district"
    assert Router(directory, FakeGeo(), max_km=2.0).route("cam", IN_C1).reason == "fallback:district"


def test_ids_unknown_to_the_directory_are_ignored() -> None:
    geo = FakeGeo(containing_map={IN_C1: ["gone", "d1"]})
    assert Router(CenterDirectory(CENTERS), geo, max_km=2.0).route("cam", IN_C1).center_id == "d1"


def test_override_to_unknown_center_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown center 'nope'"):
        Router(CenterDirectory(CENTERS), GEO, max_km=2.0, overrides={"cam": "nope"})


# --- hierarchy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("center", "parent", "ancestors"),
    [("c1", "s1", ("s1", "d1")), ("s2", "d1", ("d1",)), ("d1", None, ()), ("d2", None, ())],
)
def test_hierarchy(center: str, parent: str | None, ancestors: tuple[str, ...]) -> None:
    directory = CenterDirectory(CENTERS)
    assert directory.parent_of(center) == parent
    assert directory.ancestors(center) == ancestors


def test_descendants_and_districts() -> None:
    directory = CenterDirectory(CENTERS)
    assert directory.descendants("d1") == ("c1", "s1", "s2")
    assert directory.descendants("c1") == ()
    assert directory.districts == ("d1", "d2")


def test_unknown_center_names_itself() -> None:
    with pytest.raises(KeyError, match="unknown center 'x'"):
        CenterDirectory(CENTERS).parent_of("x")


@pytest.mark.parametrize(
    ("centers", "message"),
    [
        ([CenterInfo("s", "S", "street", None, 60)], "needs a parent"),
        ([CenterInfo("d", "D", "district", None, 60)] * 2, "appears twice"),
        (
            [CenterInfo("d", "D", "district", None, 60), CenterInfo("s", "S", "street", "zz", 60)],
            "which is not a center",
        ),
        (
            [
                CenterInfo("d", "D", "district", None, 60),
                CenterInfo("c", "C", "community", "d", 60),
                CenterInfo("s", "S", "street", "c", 60),
            ],
            "cannot have parent",
        ),
        ([], "at least one district"),
    ],
    ids=["street-without-parent", "duplicate", "missing-parent", "parent-deeper", "no-district"],
)
def test_invalid_hierarchies(centers: list[CenterInfo], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CenterDirectory(centers)


def test_center_info_validates_level_and_sla() -> None:
    with pytest.raises(ValueError, match="unknown level"):
        CenterInfo("x", "X", "county", None, 60)  # type: ignore[arg-type]
    for sla_s in (0.0, -5.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="ack_sla_s must be positive"):
            CenterInfo("x", "X", "district", None, sla_s)

"""build_router wires the validated configuration into the core Router."""

from __future__ import annotations

from crowdwatch.alerting.router import build_router
from crowdwatch.config.root import parse_config

from .builders import IN_C1, WEST_OF_S1_5KM, WORLD


def _config(max_km: float) -> dict[str, object]:
    camera = {
        "url": "file:///dev/null",
        "zones": [{"id": "gate", "polygon": [[0, 0], [100, 0], [100, 100]]}],
    }
    return {
        "cameras": [
            {**camera, "id": "cam-a", "location": {"lat": IN_C1.lat, "lon": IN_C1.lon}},
            {**camera, "id": "cam-b", "location": {"lat": IN_C1.lat, "lon": IN_C1.lon}, "center": "s2"},
        ],
        "centers": [
            {
                "id": p.info.id,
                "name": p.info.name,
                "level": p.info.level,
                "parent": p.info.parent,
                "ack_sla_s": p.info.ack_sla_s,
                "boundary": p.boundary,
            }
            for p in WORLD
        ],
        "routing": {"max_km": max_km},
    }


def test_build_router_from_config() -> None:
    router = build_router(parse_config(_config(max_km=10.0)))
    assert router.route("cam-a", IN_C1).reason == "inside:community"
    assert router.route("cam-b", IN_C1).center_id == "s2"
    assert router.route("cam-a", None).center_id == "c1"  # the configured camera location
    assert router.route("cam-a", WEST_OF_S1_5KM).reason == "nearest-street:4.8km"
    assert router.directory.ancestors("c1") == ("s1", "d1")
    assert router.directory.get("c1").ack_sla_s == 120

"""Configuration: a valid file loads; each kind of mistake gives one exact, readable line."""

from __future__ import annotations

import copy
import logging
import math
import traceback
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from crowdwatch.cli import main
from crowdwatch.config import AppConfig, load_config
from crowdwatch.config.root import ConfigError, format_validation_error, parse_config
from crowdwatch.config.rules import RulesConfig

Config = dict[str, Any]
SECRET_URL = "rtsp://admin:s3cr3t-pw@10.0.0.7:554/stream1"


def square(lon: float, lat: float, size: float) -> dict[str, Any]:
    """A closed GeoJSON Polygon (lon, lat order)."""
    ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
    return {"type": "Polygon", "coordinates": [ring]}


def valid_config() -> Config:
    """The smallest useful config: one camera with one zone, a district and a street center.
    A fresh dict every call, so tests can mutate it."""
    return {
        "cameras": [
            {
                "id": "cam-1",
                "url": "rtsp://cam1.example.net/stream",
                "location": {"lat": 31.23, "lon": 121.47},
                "zones": [{"id": "plaza", "polygon": [[0, 0], [1000, 0], [1000, 500], [0, 500]]}],
            }
        ],
        "centers": [
            {
                "id": "district-a",
                "name": "District A",
                "level": "district",
                "boundary": square(121.0, 31.0, 1.0),
            },
            {
                "id": "street-a1",
                "name": "Street A1",
                "level": "street",
                "parent": "district-a",
                "boundary": square(121.4, 31.2, 0.1),
            },
        ],
    }


def camera(c: Config) -> Config:
    cam: Config = c["cameras"][0]
    return cam


def zone(c: Config) -> Config:
    z: Config = c["cameras"][0]["zones"][0]
    return z


def problems_of(data: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


# -- valid ---------------------------------------------------------------------------------------


def test_valid_config_parses_with_defaults() -> None:
    cfg = parse_config(valid_config())
    assert isinstance(cfg, AppConfig)
    assert [c.id for c in cfg.cameras] == ["cam-1"]
    assert cfg.cameras[0].kind == "stream"
    assert cfg.cameras[0].zones[0].polygon == [(0, 0), (1000, 0), (1000, 500), (0, 500)]
    assert cfg.detector.type == "onnx"
    assert cfg.rules.enter_count == 20
    assert cfg.center("street-a1").parent == "district-a"


def test_valid_config_builder_returns_a_fresh_dict() -> None:
    a = valid_config()
    zone(a)["id"] = "changed"
    assert zone(valid_config())["id"] == "plaza"


def test_valid_config_with_every_optional_part() -> None:
    c = valid_config()
    camera(c)["center"] = "street-a1"
    camera(c)["calibration"] = {
        "image_points": [[0, 0], [100, 0], [100, 100], [0, 100]],
        "ground_points": [[0, 0], [1, 0], [1, 1], [0, 1]],
    }
    zone(c)["rules"] = {"enter_count": 18, "exit_count": 12, "min_duration_s": 0}
    c["detector"] = {"type": "ultralytics", "device": "cuda:0"}
    c["rules"] = {"enter_count": 25, "exit_count": 15, "severity_counts": {"medium": 30}}
    c["centers"].append(
        {
            "id": "grid-7",
            "name": "Grid 7",
            "level": "community",
            "parent": "street-a1",
            "boundary": {"type": "MultiPolygon", "coordinates": [square(121.45, 31.22, 0.01)["coordinates"]]},
        }
    )
    cfg = parse_config(c)
    assert cfg.detector.type == "ultralytics"
    assert cfg.cameras[0].calibration is not None
    zone_rules = cfg.cameras[0].zones[0].rules
    assert zone_rules is not None
    merged = zone_rules.apply(cfg.rules)
    assert (merged.enter_count, merged.exit_count, merged.min_duration_s, merged.cooldown_s) == (
        18,
        12,
        0,
        60,
    )
    assert cfg.rules.enter_count == 25  # the global rules are unchanged


def test_load_config_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "crowdwatch.yaml"
    path.write_text(yaml.safe_dump(valid_config()), encoding="utf-8")
    cfg = load_config(path)
    assert cfg.cameras[0].id == "cam-1"
    assert cfg.centers[1].level == "street"


def test_file_path_url_is_a_file_source() -> None:
    c = valid_config()
    camera(c)["url"] = "/videos/plaza.mp4"
    assert parse_config(c).cameras[0].kind == "file"


# -- invalid: one mutation, one exact line ----------------------------------------------------------


def dup_camera(c: Config) -> None:
    c["cameras"].append(copy.deepcopy(camera(c)))


def dup_zone(c: Config) -> None:
    camera(c)["zones"].append(copy.deepcopy(zone(c)))


def dup_center(c: Config) -> None:
    c["centers"].append(copy.deepcopy(c["centers"][1]))


def district_under_street(c: Config) -> None:
    c["centers"].append(
        {
            "id": "d-2",
            "name": "D2",
            "level": "district",
            "parent": "street-a1",
            "boundary": square(120, 30, 1),
        }
    )


def street_under_street(c: Config) -> None:
    c["centers"].append(
        {
            "id": "s-2",
            "name": "S2",
            "level": "street",
            "parent": "street-a1",
            "boundary": square(121, 31, 0.1),
        }
    )


def set_in(path: str, value: Any) -> Callable[[Config], None]:
    """`set_in("cameras.0.url", x)`: set one value deep in the config."""

    def mutate(c: Config) -> None:
        *parents, last = path.split(".")
        node: Any = c
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value

    return mutate


def drop(path: str) -> Callable[[Config], None]:
    def mutate(c: Config) -> None:
        *parents, last = path.split(".")
        node: Any = c
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        del node[last]

    return mutate


ID_RULE = "ids are 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
# The zone outlines below all cross (or touch) between the same two edges.
CROSSING_0_1_2_3 = (
    "cameras[0].zones[0].polygon: polygon outline crosses itself: the edge from point 0 to "
    "point 1 meets the edge from point 2 to point 3 (counting from 0); list the points in "
    "order around the zone"
)
BAD_CONFIGS = [
    pytest.param(
        set_in("cameras.0.fps", 5), ["cameras[0].fps: unknown field (not allowed here)"], id="unknown-field"
    ),
    pytest.param(
        set_in("colour", "red"), ["colour: unknown field (not allowed here)"], id="unknown-top-level-field"
    ),
    pytest.param(
        set_in("rules", {"smoothing": {"kind": "median"}}),
        ["rules.smoothing.kind: unknown field (not allowed here)"],
        id="unknown-nested-field",
    ),
    pytest.param(drop("cameras.0.url"), ["cameras[0].url: required field is missing"], id="missing-url"),
    pytest.param(
        set_in("counting", {"density": {"device": "gpu"}}),
        ["counting.density.device: device must be auto, cpu, cuda or cuda:N (N = GPU index), not 'gpu'"],
        id="density-device-unknown",
    ),
    pytest.param(
        set_in("detector", {"type": "ultralytics", "device": "cuda0"}),
        ["detector.device: device must be auto, cpu, cuda or cuda:N (N = GPU index), not 'cuda0'"],
        id="detector-device-unknown",
    ),
    pytest.param(drop("centers"), ["centers: required field is missing"], id="missing-centers"),
    pytest.param(
        set_in("cameras", []),
        ["cameras: List should have at least 1 item after validation, not 0"],
        id="no-cameras",
    ),
    pytest.param(
        set_in("cameras.0.zones.0.polygon", [[0, 0], [100, 100]]),
        ["cameras[0].zones[0].polygon: a zone polygon needs at least 3 points, got 2"],
        id="polygon-2-points",
    ),
    pytest.param(
        set_in("cameras.0.zones.0.polygon", [[0, 0], [100, -5], [100, 100]]),
        ["cameras[0].zones[0].polygon: polygon points are pixel coordinates and cannot be negative"],
        id="polygon-negative-coordinate",
    ),
    pytest.param(
        set_in("cameras.0.zones.0.polygon", [[0, 0], [50, 50], [100, 100]]),
        ["cameras[0].zones[0].polygon: polygon has no area (points are collinear or repeated)"],
        id="polygon-collinear",
    ),
    pytest.param(
        set_in("cameras.0.zones.0.polygon", [[0, 0], [100, "x"], [100, 100]]),
        [
            "cameras[0].zones[0].polygon[1][1]: "
            "Input should be a valid number, unable to parse string as a number"
        ],
        id="polygon-not-a-number",
    ),
    pytest.param(
        set_in("cameras.0.zones.0.polygon", [[0, 0], [math.nan, 0], [100, 100]]),
        ["cameras[0].zones[0].polygon[1][0]: Input should be a finite number"],
        id="polygon-nan",
    ),
    pytest.param(
        set_in("cameras.0.zones.0.polygon", [[0, 0], [100, 0], [100, math.inf]]),
        ["cameras[0].zones[0].polygon[2][1]: Input should be a finite number"],
        id="polygon-inf",
    ),
    pytest.param(
        # A bow tie: two triangles of ~5000 px2 whose shoelace "area" is their difference (~50).
        set_in("cameras.0.zones.0.polygon", [[0, 0], [100, 100], [100, 0], [0, 101]]),
        [CROSSING_0_1_2_3],
        id="polygon-bow-tie",
    ),
    pytest.param(
        # Symmetric: zero shoelace area, but the problem is the crossing, not collinear points.
        set_in("cameras.0.zones.0.polygon", [[0, 0], [100, 100], [100, 0], [0, 100]]),
        [CROSSING_0_1_2_3],
        id="polygon-symmetric-bow-tie",
    ),
    pytest.param(
        # Point 3 lies on the edge from point 0 to 1: the outline touches itself.
        set_in("cameras.0.zones.0.polygon", [[0, 0], [100, 0], [100, 100], [50, 0], [0, 100]]),
        [CROSSING_0_1_2_3],
        id="polygon-touches-itself",
    ),
    pytest.param(
        set_in("cameras.0.read_timeout_s", math.inf),
        ["cameras[0].read_timeout_s: Input should be a finite number"],
        id="read-timeout-inf",
    ),
    pytest.param(
        set_in("cameras.0.open_timeout_s", math.inf),
        ["cameras[0].open_timeout_s: Input should be a finite number"],
        id="open-timeout-inf",
    ),
    pytest.param(
        set_in("cameras.0.offline_after_s", math.inf),
        ["cameras[0].offline_after_s: Input should be a finite number"],
        id="offline-after-inf",
    ),
    pytest.param(
        set_in("cameras.0.sample_every_s", math.nan),
        ["cameras[0].sample_every_s: Input should be a finite number"],
        id="sample-every-nan",
    ),
    pytest.param(
        set_in("cameras.0.reconnect", {"max_s": math.inf}),
        ["cameras[0].reconnect.max_s: Input should be a finite number"],
        id="reconnect-max-inf",
    ),
    pytest.param(
        set_in("rules", {"clear_after_s": math.inf}),
        ["rules.clear_after_s: Input should be a finite number"],
        id="rules-clear-after-inf",
    ),
    pytest.param(
        set_in("cameras.0.zones.0.rules", {"cooldown_s": math.nan}),
        ["cameras[0].zones[0].rules.cooldown_s: Input should be a finite number"],
        id="zone-override-nan",
    ),
    pytest.param(
        set_in("rules", {"exit_count": 0}),
        ["rules.exit_count: Input should be greater than 0"],
        id="exit-count-zero-never-ends",
    ),
    pytest.param(
        set_in("rules", {"exit_density": 0}),
        ["rules.exit_density: Input should be greater than 0"],
        id="exit-density-zero-never-ends",
    ),
    pytest.param(
        set_in("cameras.0.zones.0.rules", {"exit_count": 0}),
        ["cameras[0].zones[0].rules.exit_count: Input should be greater than 0"],
        id="zone-override-exit-count-zero",
    ),
    pytest.param(
        set_in("rules", {"enter_count": 10, "exit_count": 10}),
        ["rules: exit_count (10.0) must be below enter_count (10.0)"],
        id="exit-count-equals-enter-count",
    ),
    pytest.param(
        set_in("rules", {"enter_density": 2.0, "exit_density": 3.0}),
        ["rules: exit_density (3.0) must be below enter_density (2.0)"],
        id="exit-density-above-enter-density",
    ),
    pytest.param(
        set_in("rules", {"enter_count": 20, "severity_counts": {"medium": 100}}),
        [
            "rules.severity_counts: levels must rise: medium (100) <= high (40) <= critical (60); "
            "unset levels default to 1.5, 2 and 3 x enter_count"
        ],
        id="severity-counts-out-of-order",
    ),
    pytest.param(
        set_in("rules", {"severity_density": {"medium": 5, "high": 4}}),
        ["rules.severity_density: density severity levels must rise: medium < high < critical"],
        id="severity-density-out-of-order",
    ),
    pytest.param(
        set_in("cameras.0.zones.0.rules", {"exit_count": 25}),
        [
            "cameras[0].zones[0].rules: exit_count (25.0) must be below enter_count (20.0) "
            "(zone rules merged with the global rules)"
        ],
        id="zone-override-breaks-hysteresis",
    ),
    pytest.param(
        set_in("cameras.0.zones.0.rules", {"enter_count": -1}),
        ["cameras[0].zones[0].rules.enter_count: Input should be greater than 0"],
        id="zone-override-negative",
    ),
    pytest.param(
        set_in("detector", {"type": "tensorrt"}),
        ["detector.type: unknown type 'tensorrt' (use one of 'onnx', 'ultralytics')"],
        id="unknown-detector-type",
    ),
    pytest.param(
        set_in("detector", {"model": "yolo11n.pt"}),
        ["detector.type: missing: this section needs a type"],
        id="detector-without-type",
    ),
    pytest.param(
        set_in("detector", {"type": "onnx", "confidence": 1.5}),
        ["detector.confidence: Input should be less than 1"],
        id="detector-field-path-has-no-tag",
    ),
    pytest.param(
        set_in("cameras.0.url", "ftp://cam1.example.net/stream"),
        ["cameras[0].url: unsupported URL scheme 'ftp' (use one of rtsp, rtsps, rtmp, http, https, file)"],
        id="ftp-url",
    ),
    pytest.param(
        set_in("cameras.0.url", "rtsp://"), ["cameras[0].url: URL has no host"], id="url-without-host"
    ),
    pytest.param(set_in("cameras.0.url", "   "), ["cameras[0].url: url is empty"], id="url-blank"),
    pytest.param(set_in("cameras.0.id", "cam 1"), [f"cameras[0].id: {ID_RULE}"], id="camera-id-with-space"),
    pytest.param(
        set_in("cameras.0.zones.0.id", "-z"),
        [f"cameras[0].zones[0].id: {ID_RULE}"],
        id="zone-id-leading-dash",
    ),
    pytest.param(
        dup_camera, ["cameras[1].id: camera id 'cam-1' is already used by cameras[0]"], id="duplicate-camera"
    ),
    pytest.param(
        dup_zone, ["cameras[0].zones[1].id: zone id 'plaza' is already used by zones[0]"], id="duplicate-zone"
    ),
    pytest.param(
        dup_center,
        ["centers[2].id: center id 'street-a1' is already used by centers[1]"],
        id="duplicate-center",
    ),
    pytest.param(
        set_in("centers.1.parent", "district-z"),
        ["centers[1].parent: 'district-z' is not a center id"],
        id="parent-does-not-exist",
    ),
    pytest.param(
        drop("centers.1.parent"),
        ["centers[1].parent: a street center needs a parent"],
        id="street-without-parent",
    ),
    pytest.param(
        district_under_street,
        [
            "centers[2].parent: a district center cannot have the street center 'street-a1' as parent: "
            "the parent must be a higher level (district > street > community)"
        ],
        id="district-under-street",
    ),
    pytest.param(
        street_under_street,
        [
            "centers[2].parent: a street center cannot have the street center 'street-a1' as parent: "
            "the parent must be a higher level (district > street > community)"
        ],
        id="street-under-street",
    ),
    pytest.param(
        set_in("centers.0.level", "street"),
        [
            "centers[0].parent: a street center needs a parent",
        ],
        id="no-district-and-no-parent",
    ),
    pytest.param(
        set_in("cameras.0.center", "street-z"),
        ["cameras[0].center: 'street-z' is not a center id"],
        id="camera-override-to-unknown-center",
    ),
    pytest.param(
        set_in("centers.0.level", "county"),
        ["centers[0].level: Input should be 'district', 'street' or 'community'"],
        id="unknown-center-level",
    ),
    pytest.param(
        set_in("centers.0.boundary", square(31.0, 121.0, 0.5)),
        [
            "centers[0].boundary: boundary position [31.0, 121.0] is outside lon/lat range "
            "(GeoJSON order is [lon, lat])"
        ],
        id="geojson-lat-lon-swapped",
    ),
    pytest.param(
        set_in("centers.0.boundary", {"type": "Point", "coordinates": [121.0, 31.0]}),
        ["centers[0].boundary: boundary must be a GeoJSON Polygon or MultiPolygon, got type='Point'"],
        id="geojson-point",
    ),
    pytest.param(
        set_in("centers.0.boundary", {"type": "Polygon", "coordinates": [[[121, 31], [122, 31], [121, 31]]]}),
        ["centers[0].boundary: each boundary ring needs at least 4 positions (closed)"],
        id="geojson-ring-too-short",
    ),
    pytest.param(
        set_in(
            "centers.0.boundary",
            {"type": "Polygon", "coordinates": [[[121, 31], [math.nan, 31], [122, 32], [121, 31]]]},
        ),
        ["centers[0].boundary: boundary position [nan, 31] is not a finite [lon, lat]"],
        id="geojson-nan",
    ),
    pytest.param(
        set_in(
            "centers.0.boundary",
            {"type": "Polygon", "coordinates": [[[121, 31], [122, 32], [122, 31], [121, 32], [121, 31]]]},
        ),
        [
            "centers[0].boundary: boundary ring coordinates[0] crosses itself: the edge from "
            "position 0 to 1 meets the edge from position 2 to 3 (counting from 0)"
        ],
        id="geojson-bow-tie",
    ),
    pytest.param(
        set_in(
            "centers.1.boundary",
            {
                "type": "MultiPolygon",
                "coordinates": [
                    square(121.4, 31.2, 0.1)["coordinates"],
                    [
                        square(121.6, 31.2, 0.1)["coordinates"][0],
                        [[121.6, 31.2], [121.7, 31.3], [121.7, 31.2], [121.6, 31.3], [121.6, 31.2]],
                    ],
                ],
            },
        ),
        [
            "centers[1].boundary: boundary ring coordinates[1][1] crosses itself: the edge from "
            "position 0 to 1 meets the edge from position 2 to 3 (counting from 0)"
        ],
        id="geojson-multipolygon-hole-bow-tie",
    ),
    # Valid rings, invalid polygons: the router refused them at start-up with a traceback.
    pytest.param(
        set_in(
            "centers.0.boundary",
            {
                "type": "Polygon",
                "coordinates": [
                    square(121.0, 31.0, 1.0)["coordinates"][0],
                    square(123.0, 33.0, 0.5)["coordinates"][0],
                ],
            },
        ),
        ["centers[0].boundary: boundary is not a valid polygon: Hole lies outside shell[123 33]"],
        id="geojson-hole-outside-shell",
    ),
    pytest.param(
        set_in(
            "centers.0.boundary",
            {
                "type": "MultiPolygon",
                "coordinates": [
                    square(121.0, 31.0, 0.5)["coordinates"],
                    square(121.5, 31.0, 0.5)["coordinates"],
                ],
            },
        ),
        ["centers[0].boundary: boundary is not a valid polygon: Self-intersection[121.5 31.5]"],
        id="geojson-multipolygon-parts-share-an-edge",
    ),
    pytest.param(
        set_in(
            "centers.0.boundary",
            {"type": "Polygon", "coordinates": [[[10**400, 31], [122, 32], [122, 31], [10**400, 31]]]},
        ),
        ["centers[0].boundary: boundary position [" + "1" + "0" * 58 + " is outside lon/lat range"],
        id="geojson-huge-integer",
    ),
    pytest.param(
        set_in(
            "centers.0.boundary",
            {"type": "Polygon", "coordinates": [[[True, 31], [122, 32], [122, 31], [True, 31]]]},
        ),
        ["centers[0].boundary: boundary position [True, 31] is not [lon, lat]"],
        id="geojson-boolean-coordinate",
    ),
    pytest.param(
        set_in("cameras.0.location", {"lat": 121.47, "lon": 31.23}),
        ["cameras[0].location.lat: Input should be less than or equal to 90"],
        id="camera-lat-lon-swapped",
    ),
    pytest.param(
        set_in(
            "cameras.0.calibration",
            {"image_points": [[0, 0], [100, 0], [100, 100]], "ground_points": [[0, 0], [1, 0], [1, 1]]},
        ),
        ["cameras[0].calibration: need at least 4 point pairs, got 3"],
        id="calibration-3-points",
    ),
    pytest.param(
        set_in(
            "cameras.0.calibration",
            {
                "image_points": [[0, 0], [100, 0], [100, 100], [0, 100]],
                "ground_points": [[0, 0], [1, 0], [1, 1]],
            },
        ),
        ["cameras[0].calibration: image_points has 4 points but ground_points has 3; they must pair up"],
        id="calibration-unpaired",
    ),
    pytest.param(
        set_in(
            "cameras.0.calibration",
            {
                "image_points": [[0, 0], [100, 0], [200, 0], [300, 0]],
                "ground_points": [[0, 0], [1, 0], [1, 1], [0, 1]],
            },
        ),
        ["cameras[0].calibration: image points are collinear: they do not span a plane"],
        id="calibration-collinear",
    ),
    pytest.param(
        set_in(
            "cameras.0.calibration",
            {
                "image_points": [[0, 0], [100, 0], [100, 100], [0, 100]],
                "ground_points": [[0, 0], [1, 0], [0, 1], [1, 1]],
            },
        ),
        ["cameras[0].calibration: calibration points straddle the horizon: check their order"],
        id="calibration-points-out-of-order",
    ),
    pytest.param(
        set_in(
            "cameras.0.calibration",
            # Ground rows far from the camera come closer together up the image: the horizon is
            # the image line y = 100, and the plaza zone (y from 0 to 500) reaches above it.
            {
                "image_points": [[200, 1000], [1700, 1000], [1200, 400], [700, 400]],
                "ground_points": [[0, 0], [10, 0], [10, 20], [0, 20]],
            },
        ),
        ["cameras[0].zones[0].polygon: zone polygon reaches past the horizon of the ground calibration"],
        id="zone-above-the-horizon",
    ),
    pytest.param(
        set_in("bus", {"type": "pulsar"}),
        ["bus.type: unknown type 'pulsar' (use one of 'memory', 'kafka')"],
        id="unknown-bus-type",
    ),
    pytest.param(
        set_in("metrics", {"port": 70000}),
        ["metrics.port: Input should be less than or equal to 65535"],
        id="metrics-port-out-of-range",
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), BAD_CONFIGS)
def test_bad_config_gives_exact_problem_lines(mutate: Callable[[Config], None], expected: list[str]) -> None:
    c = valid_config()
    mutate(c)
    assert problems_of(c) == expected


def test_every_problem_gets_its_own_line() -> None:
    c = valid_config()
    dup_camera(c)
    camera(c)["center"] = "nowhere"
    c["centers"][1]["parent"] = "nobody"
    assert problems_of(c) == [
        "cameras[1].id: camera id 'cam-1' is already used by cameras[0]",
        "centers[1].parent: 'nobody' is not a center id",
        "cameras[0].center: 'nowhere' is not a center id",
    ]


def test_field_problems_from_several_cameras_are_all_reported() -> None:
    c = valid_config()
    dup_camera(c)
    c["cameras"][0]["id"] = "bad id"
    c["cameras"][1]["zones"][0]["polygon"] = [[0, 0], [1, 1]]
    assert problems_of(c) == [
        f"cameras[0].id: {ID_RULE}",
        "cameras[1].zones[0].polygon: a zone polygon needs at least 3 points, got 2",
    ]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (None, "(top level): the configuration is empty"),
        ([1, 2], "(top level): expected a mapping of sections (cameras, centers, ...)"),
        ("cameras", "(top level): expected a mapping of sections (cameras, centers, ...)"),
    ],
)
def test_top_level_must_be_a_mapping(data: Any, problem: str) -> None:
    assert problems_of(data) == [problem]


def test_config_error_names_its_source_and_problems() -> None:
    c = valid_config()
    camera(c)["fps"] = 5
    with pytest.raises(ConfigError) as info:
        parse_config(c, source="site.yaml")
    assert info.value.source == "site.yaml"
    assert str(info.value) == "site.yaml: cameras[0].fps: unknown field (not allowed here)"


def test_format_validation_error_on_a_section_model() -> None:
    with pytest.raises(ValidationError) as info:
        RulesConfig.model_validate({"enter_count": 0, "cooldown_s": -1})
    assert format_validation_error(info.value) == [
        "enter_count: Input should be greater than 0",
        "cooldown_s: Input should be greater than or equal to 0",
    ]


def _models(model: type[BaseModel], seen: list[type[BaseModel]]) -> list[type[BaseModel]]:
    """`model` and every section model below it."""
    if model not in seen:
        seen.append(model)
        for field in model.model_fields.values():
            for sub in _types_in(field.annotation):
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    _models(sub, seen)
    return seen


def _types_in(annotation: Any) -> Iterator[Any]:
    yield annotation
    for arg in get_args(annotation):
        yield from _types_in(arg)


def _with_floats(annotation: Any, value: float) -> Any:
    """An input for a field of this type with `value` in place of every float; None when the type
    holds no float."""
    origin = get_origin(annotation)
    if annotation is float:
        return value
    if origin in (Union, types.UnionType):
        return next((v for a in get_args(annotation) if (v := _with_floats(a, value)) is not None), None)
    if origin is list:
        inner = _with_floats(get_args(annotation)[0], value)
        return None if inner is None else [inner]
    if origin is tuple:
        items = [_with_floats(a, value) for a in get_args(annotation)]
        return None if None in items else items
    return None


FLOAT_FIELDS = [
    (model, name, bad)
    for model in _models(AppConfig, [])
    for name, field in model.model_fields.items()
    if (bad := _with_floats(field.annotation, 0.0)) is not None
]


def test_every_float_field_is_found() -> None:
    names = {f"{model.__name__}.{name}" for model, name, _ in FLOAT_FIELDS}
    assert len(names) > 50
    assert {
        "CameraConfig.read_timeout_s",
        "ZoneConfig.polygon",
        "CalibrationConfig.image_points",
        "RulesOverride.clear_after_s",
        "LinearCalibrationConfig.offset",
        "LocationConfig.lat",
    } <= names


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan], ids=["inf", "-inf", "nan"])
@pytest.mark.parametrize(
    ("model", "name"), [pytest.param(m, n, id=f"{m.__name__}.{n}") for m, n, _ in FLOAT_FIELDS]
)
def test_no_float_field_takes_inf_or_nan(model: type[BaseModel], name: str, value: float) -> None:
    # An infinite timeout overflows the clocks it is handed to; NaN makes every comparison false.
    bad = _with_floats(model.model_fields[name].annotation, value)
    with pytest.raises(ValidationError) as info:
        model.model_validate({name: bad})
    assert [
        e["loc"][0] for e in info.value.errors() if e["type"] == "finite_number" and e["loc"][0] == name
    ], info.value.errors()


@pytest.mark.parametrize(
    "polygon",
    [
        pytest.param([[0, 0], [100, 0], [100, 40], [40, 40], [40, 100], [0, 100]], id="concave-L"),
        pytest.param([[0, 0], [100, 0], [100, 0], [100, 100]], id="repeated-point"),
        pytest.param([[0, 0], [100, 0], [100, 100], [0, 0]], id="closed-like-geojson"),
        pytest.param([[0, 0], [100, 0], [50, 10], [100, 100], [0, 100], [50, 90]], id="star-like"),
    ],
)
def test_simple_zone_outlines_are_accepted(polygon: list[list[float]]) -> None:
    c = valid_config()
    zone(c)["polygon"] = polygon
    assert parse_config(c).cameras[0].zones[0].polygon == [tuple(p) for p in polygon]


def test_boundary_with_a_hole_is_accepted() -> None:
    c = valid_config()
    outer, hole = square(121.0, 31.0, 1.0)["coordinates"][0], square(121.2, 31.2, 0.2)["coordinates"][0]
    c["centers"][0]["boundary"] = {"type": "Polygon", "coordinates": [outer, hole[::-1]]}
    assert parse_config(c).centers[0].boundary["coordinates"][1] == hole[::-1]


# -- credentials never leak ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(set_in("cameras.0.id", "bad id"), id="bad-id"),
        pytest.param(set_in("cameras.0.location", {"lat": 100, "lon": 0}), id="bad-location"),
        pytest.param(set_in("cameras.0.fps", 5), id="unknown-field"),
        pytest.param(set_in("cameras.0.zones", []), id="no-zones"),
        pytest.param(set_in("cameras.0.center", "nowhere"), id="unknown-center"),
        pytest.param(dup_camera, id="duplicate-camera"),
        pytest.param(set_in("cameras.0.enabled", "sometimes"), id="bad-bool"),
    ],
)
@pytest.mark.parametrize(
    "url",
    [SECRET_URL, SECRET_URL.replace("rtsp://", "ftp://"), "http://admin:s3cr3t-pw@"],
)
def test_credentials_in_url_never_appear_in_errors(mutate: Callable[[Config], None], url: str) -> None:
    c = valid_config()
    camera(c)["url"] = url
    mutate(c)
    with pytest.raises(ConfigError) as info:
        parse_config(c)
    err = info.value
    assert err.problems  # it is broken
    rendered = [str(err), repr(err), *err.problems, "".join(traceback.format_exception(err))]
    assert not [text for text in rendered if "s3cr3t" in text]
    # Not even kept on the exception chain, where an error reporter could find it.
    assert err.__cause__ is None
    assert err.__context__ is None


def test_credentials_never_appear_in_yaml_errors(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(f'cameras:\n  - id: cam-1\n    url: "{SECRET_URL}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "s3cr3t" not in str(info.value)
    assert info.value.problems == ["(yaml): found unexpected end of stream at line 4, column 1"]
    # Not kept on the exception chain either: YAML's error marks hold the whole text.
    assert info.value.__context__ is None


# -- files ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param(
            "cameras:\n  - id: cam-1\n    url: rtsp://x/y\n   zones: []\n",
            "(yaml): expected <block end>, but found '<block mapping start>' at line 4, column 4",
            id="bad-indentation",
        ),
        pytest.param(
            "cameras: [a, b\n",
            "(yaml): expected ',' or ']', but got '<stream end>' at line 2, column 1",
            id="unclosed-list",
        ),
        pytest.param(
            "a: b: c\n",
            "(yaml): mapping values are not allowed here at line 1, column 5",
            id="colon-in-value",
        ),
        pytest.param(
            "cameras:\n\t- id: x\n",
            "(yaml): found character '\\t' that cannot start any token at line 2, column 1",
            id="tab",
        ),
        pytest.param(
            "cameras: []\ncenters: []\ncameras: []\n",
            "(yaml): duplicate key 'cameras' (first at line 1, column 1) at line 3, column 1",
            id="duplicate-section",
        ),
        pytest.param(
            "cameras:\n  - id: a\n    zones: []\n    url: x\n    zones: []\n",
            "(yaml): duplicate key 'zones' (first at line 3, column 5) at line 5, column 5",
            id="duplicate-nested-key",
        ),
        pytest.param(
            # Keys might be pasted URLs: only plain names are echoed.
            "rtsp://u:s3cr3t@h/x: 1\nrtsp://u:s3cr3t@h/x: 2\n",
            "(yaml): duplicate key (first at line 1, column 1) at line 2, column 1",
            id="duplicate-key-not-echoed",
        ),
        pytest.param(
            "cameras: []\x00\n",
            "(yaml): unacceptable character #x0000: special characters are not allowed at line 1, column 12",
            id="nul-character",
        ),
        pytest.param("", "(top level): the configuration is empty", id="empty-file"),
        pytest.param(
            "- a\n- b\n", "(top level): expected a mapping of sections (cameras, centers, ...)", id="list"
        ),
    ],
)
def test_yaml_errors_give_line_and_column(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "crowdwatch.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [problem]
    assert info.value.source == str(path)


def test_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    # `<<: *defaults` then the same key: an override, not a duplicate.
    path = tmp_path / "crowdwatch.yaml"
    path.write_text(
        yaml.safe_dump(valid_config())
        + "rules:\n  <<: &base {enter_count: 30, exit_count: 10}\n  enter_count: 40\n",
        encoding="utf-8",
    )
    rules = load_config(path).rules
    assert (rules.enter_count, rules.exit_count) == (40, 10)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        pytest.param(
            b"cameras:\n  - id: caf\xe9\n",
            "(file): not UTF-8 text: byte 0xe9 at offset 20 (line 2) cannot be decoded; "
            "save the file as UTF-8",
            id="latin-1",
        ),
        pytest.param(
            b"\xff\xfec\x00a\x00",
            "(file): not UTF-8 text: byte 0xff at offset 0 (line 1) cannot be decoded; "
            "save the file as UTF-8",
            id="utf-16",
        ),
    ],
)
def test_non_utf8_file(tmp_path: Path, data: bytes, problem: str) -> None:
    path = tmp_path / "crowdwatch.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [problem]
    assert info.value.__context__ is None  # the decode error holds the file's bytes


def test_validate_config_cli_reports_a_non_utf8_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"cameras:\n  - id: caf\xe9\n")
    assert main(["validate-config", str(path)]) == 1
    assert "(file): not UTF-8 text: byte 0xe9 at offset 20 (line 2)" in capsys.readouterr().err


@pytest.mark.parametrize("level", ["VERBOSE", "verbose", "warn", ""])
def test_unknown_log_level_is_a_usage_error(level: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--log-level", level, "config-reference"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --log-level: invalid choice" in err
    assert "(choose from DEBUG, INFO, WARNING, ERROR, CRITICAL)" in err.replace("'", "")


@pytest.mark.parametrize("level", ["debug", "Info", "WARNING", "error", "critical"])
def test_log_level_in_any_case(level: str, monkeypatch: pytest.MonkeyPatch) -> None:
    levels: list[Any] = []
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: levels.append(kw["level"]))
    assert main(["--log-level", level, "config-reference"]) == 0
    assert levels == [level.upper()]


def test_validation_errors_from_a_file_name_the_file(tmp_path: Path) -> None:
    c = valid_config()
    camera(c)["id"] = "cam 1"
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(c), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == f"{path}: cameras[0].id: {ID_RULE}"


def test_nonexistent_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == ["(file): no such file"]
    assert info.value.source == str(path)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.problems == ["(file): cannot read: Is a directory"]

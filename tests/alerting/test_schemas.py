"""JSON Schema files: valid themselves, matching the codec, rejecting broken events."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from crowdwatch.alerting.validate import InvalidEventError, validate_envelope
from crowdwatch.core import codec
from crowdwatch.core.types import EventType, GeoPoint, Severity
from crowdwatch.schemas import load_schema, schema_names

from .builders import camera_event, crowd_event

EVENTS = [
    crowd_event(),
    crowd_event(EventType.GATHERING_UPDATED, seq=2, density_per_m2=2.5, method="density"),
    crowd_event(EventType.GATHERING_ENDED, seq=5, count=0.0, rise_per_min=-1.0, severity=Severity.LOW),
    camera_event(),
    camera_event(EventType.CAMERA_ONLINE, location=GeoPoint(31.0, 121.0)),
    camera_event(EventType.CAMERA_DEGRADED, reason="4 fps"),
]


def test_every_event_type_has_a_schema() -> None:
    assert set(schema_names()) == {t.value for t in EventType} | {"common"}


@pytest.mark.parametrize("name", sorted({t.value for t in EventType} | {"common"}))
def test_schema_files_are_valid_2020_12(name: str) -> None:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"{codec.SCHEMA_BASE_URI}{name}.json"


def test_unknown_schema_name() -> None:
    with pytest.raises(KeyError, match="no schema named 'nope'"):
        load_schema("nope")


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.type.value)
def test_encoded_events_are_valid(event: Any) -> None:
    envelope = json.loads(codec.encode(event))
    validate_envelope(envelope)
    assert envelope["dataschema"] == load_schema(event.type.value)["$id"]


DELETE = object()


def _broken(path: str, value: object) -> dict[str, Any]:
    """The envelope of `crowd_event()` with the field at dotted `path` set (or deleted)."""
    env = copy.deepcopy(codec.to_envelope(crowd_event()))
    *parents, leaf = path.split(".")
    target = env
    for p in parents:
        target = target[p]
    if value is DELETE:
        del target[leaf]
    else:
        target[leaf] = value
    return env


INVALID = [
    ("id", DELETE, "'id' is a required property"),
    ("specversion", "0.3", "specversion"),
    ("type", "crowd.gathering.paused", "unknown event type"),
    ("time", "noon", "time: 'noon' does not match"),
    ("source", "somewhere/else", "source"),
    ("datacontenttype", "text/plain", "datacontenttype"),
    ("dataschema", f"{codec.SCHEMA_BASE_URI}camera.offline.json", "dataschema"),
    ("Bad_Extension", 1, "Bad_Extension"),
    ("data.count", DELETE, "'count' is a required property"),
    ("data.count", -1, "data.count: -1 is less than the minimum of 0"),
    ("data.count", "12", "data.count: '12' is not of type 'number'"),
    ("data.seq", 1.5, "data.seq"),
    ("data.severity", "extreme", "data.severity"),
    ("data.method", "guess", "data.method"),
    ("data.location", {"lat": 95, "lon": 0}, "data.location.lat"),
    ("data.camera_id", "has space", "data.camera_id"),
    ("data.schema_version", "2.0", "data.schema_version"),
    ("data.density_per_m2", "high", "data.density_per_m2"),
    ("data", [], "data"),
]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    INVALID,
    ids=[f"{p}=del" if v is DELETE else f"{p}={v!r:.20}" for p, v, _ in INVALID],
)
def test_invalid_events_are_rejected(path: str, value: object, message: str) -> None:
    with pytest.raises(InvalidEventError, match=re.escape(message)):
        validate_envelope(_broken(path, value))


def test_camera_event_of_crowd_shape_is_rejected() -> None:
    env = codec.to_envelope(camera_event())
    env["data"] = codec.to_envelope(crowd_event())["data"]
    env["data"].pop("location")
    with pytest.raises(InvalidEventError, match="'reason' is a required property"):
        validate_envelope(env)


def test_not_an_object() -> None:
    with pytest.raises(InvalidEventError, match="expected a JSON object"):
        validate_envelope([1, 2])


def test_extension_attributes_and_new_data_fields_are_allowed() -> None:
    env = codec.to_envelope(crowd_event())
    env["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    env["data"]["queue_length"] = 4
    validate_envelope(env)  # raises InvalidEventError when rejected
    assert codec.from_envelope(env) == crowd_event()  # and the extras change nothing


def test_many_errors_are_summarised() -> None:
    env = codec.to_envelope(crowd_event())
    env["data"] = {"camera_id": "cam-1"}
    with pytest.raises(InvalidEventError, match=r"\.\.\. and \d+ more"):
        validate_envelope(env)


def test_inlined_schemas_keep_the_same_rules() -> None:
    """The validators inline common.json's definitions for speed; they must judge exactly like
    the schemas as written (resolved through the registry)."""
    import json

    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    from crowdwatch.alerting import validate
    from crowdwatch.schemas import load_schema, schema_names

    schemas = {name: load_schema(name) for name in schema_names()}
    registry = Registry().with_resources(
        (s["$id"], Resource.from_contents(s, default_specification=DRAFT202012)) for s in schemas.values()
    )
    from crowdwatch.core import codec
    from crowdwatch.core.types import CrowdEvent, EventType, GeoPoint, Severity

    event = CrowdEvent(
        EventType.GATHERING_UPDATED,
        "cam",
        "z",
        1.8e9,
        3,
        1.8e9 - 10,
        GeoPoint(30, 120),
        20.0,
        None,
        25.0,
        3.0,
        Severity.LOW,
        "count>=20",
        "detector",
        "m",
    )
    good = codec.loads(codec.encode(event))
    variants = [good]
    for path, value in [
        (("data", "count"), -1),
        (("data", "location", "lat"), 91),
        (("id",), 5),
        (("data", "severity"), "extreme"),
        (("specversion",), "0.3"),
    ]:
        bad = json.loads(json.dumps(good))
        target = bad
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        variants.append(bad)
    inlined = validate._validators()["crowd.gathering.updated"]
    assert "common.json" not in json.dumps(inlined.schema)
    reference = Draft202012Validator(schemas["crowd.gathering.updated"], registry=registry)
    verdicts = [(inlined.is_valid(v), reference.is_valid(v)) for v in variants]
    assert verdicts[0] == (True, True)
    assert all(a == b for a, b in verdicts)
    assert not any(a for a, _ in verdicts[1:])

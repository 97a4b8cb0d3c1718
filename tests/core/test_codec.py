"""CloudEvents codec: exact round trips, and a clear DecodeError for every kind of bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from crowdwatch.core import codec
from crowdwatch.core.codec import DecodeError, EncodeError, decode, encode
from crowdwatch.core.types import CameraStatusEvent, CrowdEvent, EventType, GeoPoint, Severity

T0 = 1_700_000_000.0


def crowd(type: EventType = EventType.GATHERING_STARTED, **changes: Any) -> CrowdEvent:
    base = CrowdEvent(
        type=type,
        camera_id="cam-1",
        zone_id="gate",
        ts=T0 + 12.345678901,
        seq=0,
        episode_start=T0 + 0.1,
        location=GeoPoint(lat=31.2304, lon=121.4737),
        count=41.5,
        density_per_m2=2.3,
        peak=42.0,
        rise_per_min=6.25,
        severity=Severity.HIGH,
        trigger="count>=30",
        method="density",
        model="csrnet",
    )
    return replace(base, **changes)


def status(type: EventType = EventType.CAMERA_OFFLINE, **changes: Any) -> CameraStatusEvent:
    return replace(
        CameraStatusEvent(type=type, camera_id="cam-1", ts=T0 + 0.7, reason="no frames for 20 s"), **changes
    )


EVENTS = [
    crowd(),
    crowd(EventType.GATHERING_UPDATED, seq=3, density_per_m2=None, method="detector"),
    crowd(EventType.GATHERING_ENDED, seq=9, count=0.0, rise_per_min=-4.0, severity=Severity.LOW),
    crowd(ts=0.1 + 0.2, episode_start=1e-7, count=1 / 3, peak=2 / 3),  # awkward floats
    status(),
    status(EventType.CAMERA_ONLINE, location=GeoPoint(lat=-33.9, lon=18.4)),
    status(EventType.CAMERA_DEGRADED, reason="decode errors", ts=T0 + 1 / 7),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: f"{e.type.value}")
def test_round_trip_is_exact(event: CrowdEvent | CameraStatusEvent) -> None:
    assert decode(encode(event)) == event


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: f"{e.type.value}")
def test_envelope_attributes(event: CrowdEvent | CameraStatusEvent) -> None:
    env = json.loads(encode(event))
    assert env["specversion"] == "1.0"
    assert env["id"] == event.id
    assert env["source"] == "crowdwatch/camera/cam-1"
    assert env["type"] == event.type.value
    assert env["datacontenttype"] == "application/json"
    assert env["dataschema"].endswith(f"/{event.type.value}.json")
    assert env["time"].endswith("Z")
    expected_subject = event.zone_id if isinstance(event, CrowdEvent) else event.camera_id
    assert env["subject"] == expected_subject


def test_crowd_data_fields() -> None:
    data = json.loads(encode(crowd()))["data"]
    assert data == {
        "camera_id": "cam-1",
        "zone_id": "gate",
        "location": {"lat": 31.2304, "lon": 121.4737},
        "count": 41.5,
        "density_per_m2": 2.3,
        "peak": 42.0,
        "rise_per_min": 6.25,
        "severity": "high",
        "threshold": "count>=30",
        "episode_start": "2023-11-14T22:13:20.1Z",
        "seq": 0,
        "method": "density",
        "model": "csrnet",
        "schema_version": "1.0",
    }


def test_id_is_deterministic() -> None:
    assert json.loads(encode(crowd(seq=4)))["id"] == "cam-1:gate:1700000000100:4"
    assert encode(crowd()) == encode(crowd())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-11-14T22:13:20Z", T0),
        ("2023-11-14T22:13:20.5Z", T0 + 0.5),
        ("2023-11-15T00:13:20+02:00", T0),
        ("2023-11-14t20:13:20.25-02:00", T0 + 0.25),
        ("1970-01-01T00:00:00Z", 0.0),
    ],
)
def test_parse_time(text: str, expected: float) -> None:
    assert codec.parse_time(text) == expected


@pytest.mark.parametrize(
    "text", ["2023-11-14 22:13:20Z", "2023-11-14T22:13:20", "2023-02-30T00:00:00Z", "yesterday"]
)
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"RFC3339|valid date"):
        codec.parse_time(text)


@pytest.mark.parametrize(
    "text",
    ["0001-01-01T00:00:00Z", "0085-01-17T00:12:46Z", "0999-12-31T23:59:59.25Z", "9999-12-31T23:59:59.5Z"],
)
def test_every_time_read_is_written_back_the_same(text: str) -> None:
    """Years before 1000 keep four digits (strftime wrote '85-01-17', which no reader takes)."""
    assert codec.format_time(codec.parse_time(text)) == text


def test_encode_rejects_nan() -> None:
    with pytest.raises(EncodeError, match=r"NaN|Out of range"):
        encode(crowd(count=float("nan")))


def _mutated(path: str, value: Any) -> bytes:
    """The encoding of `crowd()` with one field changed (`value` ... deletes it)."""
    env = json.loads(encode(crowd()))
    *parents, leaf = path.split(".")
    target = env
    for p in parents:
        target = target[p]
    if value is ...:
        del target[leaf]
    else:
        target[leaf] = value
    return json.dumps(env).encode()


BAD = [
    ("garbage bytes", b"\xff\xfe\x00garbage", "not UTF-8"),
    ("not json", b"{not json", "not valid JSON"),
    ("json array", b"[1, 2]", "expected a JSON object"),
    ("NaN literal", encode(crowd()).replace(b'"count":41.5', b'"count":NaN'), "NaN is not allowed"),
    ("no specversion", _mutated("specversion", ...), "specversion: missing"),
    ("wrong specversion", _mutated("specversion", "0.3"), "specversion: expected '1.0'"),
    ("unknown type", _mutated("type", "crowd.gathering.exploded"), "unknown event type"),
    ("type not a string", _mutated("type", 7), "type: expected a string"),
    ("no data", _mutated("data", ...), "data: missing"),
    ("data not an object", _mutated("data", "x"), "data: expected an object"),
    ("missing count", _mutated("data.count", ...), "data.count: missing"),
    ("count is a string", _mutated("data.count", "41"), "data.count: expected a number"),
    ("count is a bool", _mutated("data.count", True), "data.count: expected a number"),
    ("count overflows", _mutated("data.count", 10**400), "data.count: expected a number in range"),
    ("count 1e400", encode(crowd()).replace(b'"count":41.5', b'"count":1e400'), "1e400 is out of range"),
    ("nested too deeply", b'{"a":' * 5000 + b"1" + b"}" * 5000, "nested too deeply"),
    (
        "lone surrogate",
        _mutated("data.zone_id", "XX").replace(b'"XX"', b'"\\udcff"'),
        "data.zone_id: not valid Unicode",
    ),
    ("time past 9999 in UTC", _mutated("time", "9999-12-31T23:30:00-01:00"), "outside the years 1..9999"),
    ("time before year 1 in UTC", _mutated("time", "0001-01-01T00:10:00+01:00"), "outside the years 1..9999"),
    ("seq is a float", _mutated("data.seq", 1.5), "data.seq: expected a non-negative integer"),
    ("negative seq", _mutated("data.seq", -1), "data.seq: expected a non-negative integer"),
    ("unknown severity", _mutated("data.severity", "apocalyptic"), "unknown severity"),
    ("unknown method", _mutated("data.method", "guess"), "unknown method"),
    ("bad time", _mutated("time", "noon"), "time: 'noon' is not an RFC3339"),
    ("bad episode_start", _mutated("data.episode_start", 5), "data.episode_start: expected a string"),
    ("latitude out of range", _mutated("data.location.lat", 91.0), "latitude 91.0"),
    ("location missing lon", _mutated("data.location.lon", ...), "data.location.lon: missing"),
    ("location null", _mutated("data.location", None), "data.location: expected an object"),
    ("id does not match data", _mutated("id", "cam-1:gate:0:0"), "id: 'cam-1:gate:0:0' does not match"),
    ("source does not match", _mutated("source", "crowdwatch/camera/other"), "source: .* does not match"),
    ("subject does not match", _mutated("subject", "exit"), "subject: 'exit' does not match"),
]


@pytest.mark.parametrize(("raw", "message"), [(raw, msg) for _, raw, msg in BAD], ids=[b[0] for b in BAD])
def test_decode_rejects(raw: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode(raw)


def test_decode_ignores_extension_attributes_and_new_data_fields() -> None:
    env = json.loads(encode(crowd()))
    env["traceparent"] = "00-abc-def-01"
    env["data"]["new_field_in_1_1"] = 1
    assert decode(json.dumps(env).encode()) == crowd()


def test_non_finite_numbers_in_an_envelope_are_refused() -> None:
    """An envelope built in Python (not parsed from JSON) may hold inf: it is refused as well."""
    env = json.loads(encode(crowd()))
    env["data"]["peak"] = float("inf")
    with pytest.raises(DecodeError, match=r"data\.peak: expected a finite number"):
        codec.from_envelope(env)


def test_integer_json_numbers_decode_as_floats() -> None:
    event = decode(_mutated("data.count", 41))
    assert isinstance(event, CrowdEvent)
    assert event.count == 41.0
    assert isinstance(event.count, float)

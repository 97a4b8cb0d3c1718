"""The hot path for well-formed events: one typed msgspec decode of the raw bytes that checks
what the JSON Schemas check, then the same event `codec.from_envelope` makes.

It may only say yes: `decode_valid` returns the event when the message is certainly valid, and
None for anything it is not sure of (a CloudEvent extension attribute, `seq` written as 2.0, a
mismatched id, bytes that are not JSON...). The caller then takes the reference path (parse,
fastjsonschema / jsonschema, `from_envelope`), which decides and writes the error message. So
every field below is at least as strict as the schema in `crowdwatch/schemas`, never looser;
tests/alerting/test_fastdecode.py holds it to that on the schema tests' tables and seeded
mutations. Parsing, validation and building the event took ~75 us per event before; this takes
a fraction of that (benchmarks/alerting_throughput.py, "decode stages").
"""

from __future__ import annotations

import functools
from typing import Annotated, Final, Literal, Union, cast

import msgspec

from crowdwatch.core import codec
from crowdwatch.core.types import CameraStatusEvent, CrowdEvent, EventType, GeoPoint, Severity

# The schemas' patterns (common.json); msgspec matches with Python's `re.search`, as jsonschema
# does, so `$` reads the same to both.
_ID = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
# Times are not matched here: `decode_valid` parses every one with `codec.parse_time`, whose
# pattern is the schema's (a second match of the same pattern cost ~0.3 us a field).
_TIME = str
_VERSION = Annotated[str, msgspec.Meta(pattern=r"^1\.[0-9]+$")]
# The source's pattern (the camera prefix, then an id) is not matched either: `decode_valid`
# requires it to equal `codec.source_for(camera_id)`, and camera_id is matched as an id.
_SOURCE = str
_NONEMPTY = Annotated[str, msgspec.Meta(min_length=1)]
_NONNEGATIVE = Annotated[float, msgspec.Meta(ge=0)]
_SEVERITY = Literal["low", "medium", "high", "critical"]
_METHOD = Literal["detector", "tiled", "density"]


class _Location(msgspec.Struct, forbid_unknown_fields=True):
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    lon: Annotated[float, msgspec.Meta(ge=-180, le=180)]


class _CrowdData(msgspec.Struct):  # unknown fields allowed, as in the schema (newer producers)
    camera_id: _ID
    zone_id: _ID
    location: _Location
    count: _NONNEGATIVE
    density_per_m2: _NONNEGATIVE | None
    peak: _NONNEGATIVE
    rise_per_min: float
    severity: _SEVERITY
    threshold: str
    episode_start: _TIME
    seq: Annotated[int, msgspec.Meta(ge=0)]
    method: _METHOD
    model: str
    schema_version: _VERSION


class _CameraData(msgspec.Struct):
    camera_id: _ID
    reason: str
    location: _Location | None
    schema_version: _VERSION


# Extension attributes are valid but rare: forbidding unknown envelope fields sends them to the
# reference path rather than re-implementing the schema's rule for their names here.
class _Envelope(msgspec.Struct, forbid_unknown_fields=True, tag_field="type"):
    specversion: Literal["1.0"]
    id: _NONEMPTY
    source: _SOURCE
    subject: _NONEMPTY
    time: _TIME
    datacontenttype: Literal["application/json"]


def _crowd(event_type: EventType) -> type[_Envelope]:
    schema = codec.dataschema_for(event_type)
    fields = [("dataschema", Literal[schema]), ("data", _CrowdData)]
    made = msgspec.defstruct(f"_Crowd_{event_type.name}", fields, bases=(_Envelope,), tag=event_type.value)
    return cast(type[_Envelope], made)


def _camera(event_type: EventType) -> type[_Envelope]:
    schema = codec.dataschema_for(event_type)
    fields = [("dataschema", Literal[schema]), ("data", _CameraData)]
    made = msgspec.defstruct(f"_Camera_{event_type.name}", fields, bases=(_Envelope,), tag=event_type.value)
    return cast(type[_Envelope], made)


_CROWD_TYPES: Final = (EventType.GATHERING_STARTED, EventType.GATHERING_UPDATED, EventType.GATHERING_ENDED)
_CAMERA_TYPES: Final = (EventType.CAMERA_OFFLINE, EventType.CAMERA_ONLINE, EventType.CAMERA_DEGRADED)
_TYPES: Final[dict[type[_Envelope], EventType]] = {
    **{_crowd(t): t for t in _CROWD_TYPES},
    **{_camera(t): t for t in _CAMERA_TYPES},
}
# Building a decoder does no I/O; one per process, made at import.
_DECODER: Final = msgspec.json.Decoder(Union[tuple(_TYPES)])  # noqa: UP007
_SEVERITIES: Final = {s.label: s for s in Severity}
# Every event of an episode repeats its start: parsed once (a pure function of the text).
_episode_start: Final = functools.lru_cache(maxsize=4096)(codec.parse_time)


def decode_valid(raw: bytes) -> CrowdEvent | CameraStatusEvent | None:
    """The event in `raw` when it is certainly a valid crowdwatch CloudEvent; None otherwise
    (the reference path then decides)."""
    try:
        envelope = _DECODER.decode(raw)
        ts = codec.parse_time(envelope.time)
        data = envelope.data
        event_type = _TYPES[type(envelope)]
        event: CrowdEvent | CameraStatusEvent
        if isinstance(data, _CrowdData):
            event = CrowdEvent(
                type=event_type,
                camera_id=data.camera_id,
                zone_id=data.zone_id,
                ts=ts,
                seq=data.seq,
                episode_start=_episode_start(data.episode_start),
                location=GeoPoint(data.location.lat, data.location.lon),
                count=data.count,
                density_per_m2=data.density_per_m2,
                peak=data.peak,
                rise_per_min=data.rise_per_min,
                severity=_SEVERITIES[data.severity],
                trigger=data.threshold,
                method=data.method,
                model=data.model,
                schema_version=data.schema_version,
            )
            subject = event.zone_id
        else:
            location = data.location
            event = CameraStatusEvent(
                type=event_type,
                camera_id=data.camera_id,
                ts=ts,
                reason=data.reason,
                location=None if location is None else GeoPoint(location.lat, location.lon),
                schema_version=data.schema_version,
            )
            subject = event.camera_id
    except (msgspec.MsgspecError, ValueError, TypeError, KeyError, RecursionError):
        return None  # RecursionError: msgspec on objects nested thousands deep
    if envelope.id != event.id or envelope.source != codec.source_for(event.camera_id):
        return None
    if envelope.subject != subject:
        return None
    return event

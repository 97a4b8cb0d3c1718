"""CloudEvents 1.0 structured-mode JSON for CrowdEvent and CameraStatusEvent (DESIGN 3).

Pure: stdlib only, plus orjson (when installed) to parse faster. Without it, or for any input it
refuses, the stdlib parser decides, so errors read as the stdlib's; what it accepts parses to the
same objects, except integers beyond 64 bits, which orjson makes floats (as `from_envelope` makes
every number but `data.seq`, which is re-read by the stdlib then). Schema validation
(jsonschema) lives in `crowdwatch.alerting.validate`, so a worker can encode without that
dependency.

Times are RFC3339 UTC strings whose fraction is the shortest decimal that reads back as the same
float (`repr`), so `decode(encode(e)) == e` exactly, down to the last bit of `ts`.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Final, get_args

try:
    import orjson
except ImportError:  # pragma: no cover - a declared dependency; the stdlib path is complete
    orjson = None  # type: ignore[assignment]

from crowdwatch.core.types import (
    CAMERA_TYPES,
    GATHERING_TYPES,
    CameraStatusEvent,
    CountMethod,
    CrowdEvent,
    EventType,
    GeoPoint,
    Severity,
)

SPECVERSION: Final = "1.0"
CONTENT_TYPE: Final = "application/json"
# `$id` prefix of the JSON Schema files in crowdwatch/schemas; `dataschema` names one of them.
SCHEMA_BASE_URI: Final = "https://crowdwatch.example/schemas/v1/"
SOURCE_PREFIX: Final = "crowdwatch/camera/"

Event = CrowdEvent | CameraStatusEvent
_METHODS: Final = frozenset(get_args(CountMethod))
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL: Final = _EPOCH.toordinal()
# The first and last whole seconds (epoch) of the years 1..9999, UTC.
_FIRST_SECOND: Final = (datetime(1, 1, 1).toordinal() - _EPOCH_ORDINAL) * 86400
_LAST_SECOND: Final = (datetime(9999, 12, 31).toordinal() - _EPOCH_ORDINAL) * 86400 + 86399
# The last float time that format_time writes (years 1..9999), and the fraction digits that
# parse_time reads exactly (a float's exact decimal has at most ~1075 digits after the point).
_LAST_TIME: Final = math.nextafter(float(_LAST_SECOND + 1), 0.0)
_FRACTION_DIGITS: Final = 1100
_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$")


class DecodeError(ValueError):
    """Bytes that are not a crowdwatch CloudEvent. The message says what is wrong and where."""


class EncodeError(ValueError):
    """An event that cannot be written as JSON (NaN or infinite numbers)."""


def dataschema_for(event_type: EventType) -> str:
    return f"{SCHEMA_BASE_URI}{event_type.value}.json"


def source_for(camera_id: str) -> str:
    return f"{SOURCE_PREFIX}{camera_id}"


# --- time -----------------------------------------------------------------------------------


def format_time(ts: float) -> str:
    """Epoch seconds -> RFC3339 UTC, keeping every digit `repr(ts)` needs to read back exactly."""
    if not math.isfinite(ts):
        raise EncodeError(f"time {ts!r} is not a finite number")
    exact = Decimal(repr(float(ts)))
    whole = exact.to_integral_value(rounding=ROUND_FLOOR)
    frac = exact - whole
    try:
        d = _EPOCH + timedelta(seconds=int(whole))
    except OverflowError:
        raise EncodeError(f"time {ts!r} is outside the years 1..9999") from None
    # By hand: strftime writes years before 1000 with fewer than four digits on some platforms.
    stamp = f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}"
    if frac:
        # Decimal('0.25') -> '25'; a plain format avoids scientific notation for tiny fractions.
        stamp += "." + format(frac, "f").split(".", 1)[1].rstrip("0")
    return stamp + "Z"


def parse_time(text: str) -> float:
    """RFC3339 (any offset, any number of fraction digits) -> epoch seconds."""
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not an RFC3339 timestamp")
    stamp, fraction, offset = m.groups()
    whole = _whole_seconds(stamp, offset)
    if isinstance(whole, str):
        raise ValueError(f"{text!r} {whole}")
    if not fraction:
        return float(whole)
    if len(fraction) > _FRACTION_DIGITS:
        # Past any float's precision (and int() refuses 4300 digits): cut, keeping a last digit
        # that says whether anything followed, which is all the rounding below can need.
        rest = fraction[_FRACTION_DIGITS:]
        fraction = fraction[:_FRACTION_DIGITS] + ("1" if rest.strip("0") else "")
    # An exact ratio of integers, rounded once to the nearest float (int / int is correctly
    # rounded): the same float that the written decimal names, however many digits it has.
    scale: int = 10 ** len(fraction)
    value = (whole * scale + int(fraction)) / scale
    if value > _LAST_TIME:  # rounded up into the year 10000: could not be written again
        raise ValueError(f"{text!r} is outside the years 1..9999 in UTC")
    return value


# Events of the same second share it (thousands a second on a busy consumer): the calendar
# arithmetic, most of parse_time's cost, is done once per second and offset.
@functools.lru_cache(maxsize=1024)
def _whole_seconds(stamp: str, offset: str) -> int | str:
    """Epoch seconds of `stamp` (YYYY-MM-DDTHH:MM:SS) at `offset`, or why it is not a time."""
    try:
        d = datetime(
            int(stamp[0:4]),
            int(stamp[5:7]),
            int(stamp[8:10]),
            int(stamp[11:13]),
            int(stamp[14:16]),
            int(stamp[17:19]),
        )
    except ValueError as exc:
        return f"is not a valid date: {exc}"
    whole = (d.toordinal() - _EPOCH_ORDINAL) * 86400 + d.hour * 3600 + d.minute * 60 + d.second
    if offset not in ("Z", "z"):
        sign = 1 if offset[0] == "+" else -1
        whole -= sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60)
        if not _FIRST_SECOND <= whole <= _LAST_SECOND:  # every time read must be writable again
            return "is outside the years 1..9999 in UTC"
    return whole


# --- encode ---------------------------------------------------------------------------------


def to_envelope(event: Event) -> dict[str, Any]:
    """The CloudEvent as a JSON-ready mapping (what `encode` serialises)."""
    if isinstance(event, CrowdEvent):
        subject = event.zone_id
        data: dict[str, Any] = {
            "camera_id": event.camera_id,
            "zone_id": event.zone_id,
            "location": _location(event.location),
            "count": event.count,
            "density_per_m2": event.density_per_m2,
            "peak": event.peak,
            "rise_per_min": event.rise_per_min,
            "severity": event.severity.label,
            "threshold": event.trigger,
            "episode_start": format_time(event.episode_start),
            "seq": event.seq,
            "method": event.method,
            "model": event.model,
            "schema_version": event.schema_version,
        }
    else:
        subject = event.camera_id
        data = {
            "camera_id": event.camera_id,
            "reason": event.reason,
            "location": None if event.location is None else _location(event.location),
            "schema_version": event.schema_version,
        }
    return {
        "specversion": SPECVERSION,
        "id": event.id,
        "source": source_for(event.camera_id),
        "type": event.type.value,
        "subject": subject,
        "time": format_time(event.ts),
        "datacontenttype": CONTENT_TYPE,
        "dataschema": dataschema_for(event.type),
        "data": data,
    }


def encode(event: Event) -> bytes:
    try:
        text = json.dumps(to_envelope(event), allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except ValueError as exc:
        raise EncodeError(f"{event.type.value} {event.id}: {exc}") from None
    return text.encode("utf-8")


def _location(p: GeoPoint) -> dict[str, float]:
    return {"lat": p.lat, "lon": p.lon}


# --- decode ---------------------------------------------------------------------------------


def loads(raw: bytes) -> dict[str, Any]:
    """Bytes -> the JSON object, or DecodeError. Split from `from_envelope` so that a consumer
    can schema-validate the object in between without parsing twice."""
    if orjson is not None and isinstance(raw, bytes):
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # refused (e.g. 1e400, a lone surrogate): the stdlib decides, in its own words
        else:
            if isinstance(obj, dict) and not _overflowed_integer(obj):
                return obj
    return _stdlib_loads(raw)


def _overflowed_integer(obj: dict[str, Any]) -> bool:
    """orjson reads integers beyond 64 bits as floats, where the stdlib keeps them exact. The
    only integer the contract has is `data.seq`: a float there goes to the stdlib again."""
    data = obj.get("data")
    return isinstance(data, dict) and isinstance(data.get("seq"), float)


def _stdlib_loads(raw: bytes) -> dict[str, Any]:
    try:
        text = bytes(raw).decode("utf-8")
    except (UnicodeDecodeError, TypeError) as exc:
        raise DecodeError(f"not UTF-8 text: {exc}") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (json.JSONDecodeError, ValueError) as exc:
        raise DecodeError(f"not valid JSON: {exc}") from None
    except RecursionError:  # the stdlib parser recurses per nesting level
        raise DecodeError("not valid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise DecodeError(f"expected a JSON object (a CloudEvent), got {type(obj).__name__}")
    return obj


def decode(raw: bytes) -> Event:
    return from_envelope(loads(raw))


def from_envelope(obj: Mapping[str, Any]) -> Event:
    r = _Reader(obj, "")
    if (spec := r.text("specversion")) != SPECVERSION:
        raise DecodeError(f"specversion: expected '{SPECVERSION}', got '{spec}'")
    type_name = r.text("type")
    try:
        etype = EventType(type_name)
    except ValueError:
        known = ", ".join(t.value for t in EventType)
        raise DecodeError(f"type: unknown event type '{type_name}' (expected one of {known})") from None
    ts = r.time("time")
    data = r.sub("data")
    event: Event
    if etype in GATHERING_TYPES:
        event = _crowd(etype, ts, data)
        subject = event.zone_id
    else:
        assert etype in CAMERA_TYPES
        event = CameraStatusEvent(
            type=etype,
            camera_id=data.text("camera_id"),
            ts=ts,
            reason=data.text("reason"),
            location=data.location_or_none("location"),
            schema_version=data.text("schema_version"),
        )
        subject = event.camera_id
    # The envelope repeats what data says; a mismatch means a hand-made or corrupted event,
    # and the id is our dedupe key, so it must be the one the data implies.
    for name, expected in (
        ("id", event.id),
        ("source", source_for(event.camera_id)),
        ("subject", subject),
    ):
        if (got := r.text(name)) != expected:
            raise DecodeError(f"{name}: '{got}' does not match the data (expected '{expected}')")
    return event


def _crowd(etype: EventType, ts: float, d: _Reader) -> CrowdEvent:
    label = d.text("severity")
    try:
        severity = Severity.parse(label)
    except KeyError:
        known = ", ".join(s.label for s in Severity)
        raise DecodeError(f"data.severity: unknown severity '{label}' (expected one of {known})") from None
    method = d.text("method")
    if method not in _METHODS:
        raise DecodeError(f"data.method: unknown method '{method}' (expected one of {sorted(_METHODS)})")
    location = d.location("location")
    return CrowdEvent(
        type=etype,
        camera_id=d.text("camera_id"),
        zone_id=d.text("zone_id"),
        ts=ts,
        seq=d.count("seq"),
        episode_start=d.time("episode_start"),
        location=location,
        count=d.number("count"),
        density_per_m2=d.number_or_none("density_per_m2"),
        peak=d.number("peak"),
        rise_per_min=d.number("rise_per_min"),
        severity=severity,
        trigger=d.text("threshold"),
        method=method,  # type: ignore[arg-type]  # checked against CountMethod just above
        model=d.text("model"),
        schema_version=d.text("schema_version"),
    )


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed in JSON")


def _finite_float(text: str) -> float:
    # The stdlib reads 1e400 as inf, which no event may hold (the encoder refuses it).
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


class _Reader:
    """Typed field access with error messages that name the path (`data.location.lat`)."""

    def __init__(self, obj: Mapping[str, Any], path: str) -> None:
        self._obj = obj
        self._path = path

    def _get(self, name: str, optional: bool = False) -> Any:
        if name not in self._obj:
            if optional:
                return None
            raise DecodeError(f"{self._path}{name}: missing")
        return self._obj[name]

    def _wrong(self, name: str, want: str, got: Any) -> DecodeError:
        return DecodeError(f"{self._path}{name}: expected {want}, got {type(got).__name__} {got!r:.40}")

    def text(self, name: str) -> str:
        v = self._get(name)
        if not isinstance(v, str):
            raise self._wrong(name, "a string", v)
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate escape (JSON allows it): no store can keep it
            raise DecodeError(f"{self._path}{name}: not valid Unicode text: {v!r:.40}") from None
        return v

    def count(self, name: str) -> int:
        v = self._get(name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise self._wrong(name, "a non-negative integer", v)
        return v

    def number(self, name: str) -> float:
        v = self._get(name)
        # bool is an int in Python but not a number in JSON.
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self._wrong(name, "a number", v)
        try:
            number = float(v)
        except OverflowError:  # an integer of hundreds of digits
            raise self._wrong(name, "a number in range", v) from None
        if not math.isfinite(number):
            raise self._wrong(name, "a finite number", v)
        return number

    def number_or_none(self, name: str) -> float | None:
        return None if self._get(name, optional=True) is None else self.number(name)

    def time(self, name: str) -> float:
        v = self.text(name)
        try:
            return parse_time(v)
        except ValueError as exc:
            raise DecodeError(f"{self._path}{name}: {exc}") from None

    def sub(self, name: str) -> _Reader:
        v = self._get(name)
        if not isinstance(v, dict):
            raise self._wrong(name, "an object", v)
        return _Reader(v, f"{self._path}{name}.")

    def location(self, name: str) -> GeoPoint:
        loc = self.sub(name)
        lat, lon = loc.number("lat"), loc.number("lon")
        try:
            return GeoPoint(lat=lat, lon=lon)
        except ValueError as exc:
            raise DecodeError(f"{self._path}{name}: {exc}") from None

    def location_or_none(self, name: str) -> GeoPoint | None:
        return None if self._get(name, optional=True) is None else self.location(name)

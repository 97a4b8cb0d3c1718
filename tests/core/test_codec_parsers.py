"""The codec's fast parsers agree with the slow, obviously right ones: orjson with the stdlib's
json (results and error messages), integer-ratio time parsing with exact decimal arithmetic."""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime
from fractions import Fraction

import pytest

from crowdwatch.core import codec
from crowdwatch.core.codec import DecodeError
from crowdwatch.core.types import CrowdEvent, EventType, GeoPoint, Severity

ENVELOPE = (
    b'{"specversion":"1.0","id":"cam-1:gate:1700000000000:%s","type":"crowd.gathering.updated",'
    b'"data":{"seq":%s,"count":%s,"location":{"lat":%s,"lon":121.4}}}'
)


def _stdlib(raw: bytes) -> object:
    return json.loads(raw.decode("utf-8"))


def _event() -> CrowdEvent:
    return CrowdEvent(
        EventType.GATHERING_UPDATED,
        "cam-1",
        "gate",
        1.7e9 + 0.25,
        3,
        1.7e9,
        GeoPoint(31.2, 121.4),
        41.5,
        None,
        42.0,
        1.0,
        Severity.LOW,
        "count>=30",
        "detector",
        "m",
    )


@pytest.mark.parametrize(
    "raw",
    [
        ENVELOPE % (b"3", b"3", b"41.5", b"31.2"),
        ENVELOPE % (b"3", b"3", b"-0.0", b"5e-324"),
        ENVELOPE % (b"99999999999999999999", b"99999999999999999999", b"1", b"0"),  # beyond 64 bits
        ENVELOPE % (b"3", b"18446744073709551615", b"7", b"0.1"),
        b'{"a":"\\ud800","b":"caf\xc3\xa9","a":2}',  # a lone surrogate escape; a repeated key
        b' {"nested":{"deep":[1,2.5,{"x":null}]}} \n',
    ],
    ids=["plain", "signed zero", "huge seq", "huge numbers", "surrogate", "whitespace"],
)
def test_loads_gives_what_the_stdlib_gives(raw: bytes) -> None:
    got = codec.loads(raw)
    expected = _stdlib(raw)
    assert got == expected
    assert repr(got) == repr(expected)  # same types (int stays int) and the same float bits


@pytest.mark.parametrize(
    "raw",
    [
        b"\xef\xbb\xbf{}",
        b'{"count":NaN}',
        b'{"a":Infinity}',
        b'{"a":-1e400}',  # the stdlib alone would read -inf
        b'{"a":' * 5000 + b"1" + b"}" * 5000,  # the stdlib alone would hit its recursion limit
        b"[1]",
        b'"text"',
        b"{",
        b'{"a":1} x',
        b"\xff",
    ],
    ids=[
        "bom",
        "nan",
        "infinity",
        "overflow",
        "deep",
        "array",
        "string",
        "truncated",
        "trailing",
        "not utf-8",
    ],
)
def test_loads_errors_are_the_stdlib_paths_errors(raw: bytes) -> None:
    with pytest.raises(DecodeError) as fast:
        codec.loads(raw)
    with pytest.raises(DecodeError) as slow:
        codec._stdlib_loads(raw)
    assert str(fast.value) == str(slow.value)


def test_huge_integer_numbers_decode_to_the_same_event() -> None:
    """orjson reads integers beyond 64 bits as floats (the stdlib: as ints); only `data.seq` must
    stay an integer, and every other number becomes a float in the event anyway."""
    raw = codec.encode(_event()).replace(b'"count":41.5', b'"count":123456789012345678901234567890')
    assert codec.decode(raw) == codec.from_envelope(_stdlib(raw))  # type: ignore[arg-type]


def test_random_floats_parse_to_the_same_bits() -> None:
    rng = random.Random(20)
    values = [rng.uniform(-1e6, 1e6) for _ in range(300)] + [
        rng.random() * 10 ** rng.randint(-300, 300) for _ in range(300)
    ]
    raw = json.dumps({"values": values}).encode()
    assert [repr(v) for v in codec.loads(raw)["values"]] == [repr(v) for v in values]


def _exact(text: str) -> float:
    """The time `text` names, by exact rational arithmetic (the reference)."""
    m = re.fullmatch(r"(.{19})(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)", text)
    assert m is not None
    offset = "+00:00" if m[3] in "Zz" else m[3]
    whole = int(datetime.fromisoformat(m[1].upper() + offset).timestamp())
    digits = m[2] or "0"
    return float(Fraction(whole) + Fraction(int(digits), 10 ** len(digits)))


def test_parse_time_is_exact() -> None:
    rng = random.Random(7)
    stamps = [codec.format_time(rng.uniform(-2e9, 4e9)) for _ in range(2000)]
    stamps += [codec.format_time(round(rng.uniform(1.6e9, 1.8e9), rng.randint(0, 6))) for _ in range(500)]
    stamps += ["1969-12-31T23:59:59.75Z", "2023-11-14T22:13:20Z", "2023-11-14t22:13:20.1234567890123456789z"]
    for text in stamps:
        assert repr(codec.parse_time(text)) == repr(_exact(text)), text


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2023-11-14T22:13:20.5+05:30", datetime(2023, 11, 14, 16, 43, 20, tzinfo=UTC).timestamp() + 0.5),
        ("2023-11-14T22:13:20-01:00", datetime(2023, 11, 14, 23, 13, 20, tzinfo=UTC).timestamp()),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC).timestamp()),
    ],
)
def test_parse_time_offsets(text: str, seconds: float) -> None:
    assert codec.parse_time(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [("2023-02-30T00:00:00Z", "is not a valid date"), ("2023-11-14 22:13:20Z", "is not an RFC3339")],
)
def test_parse_time_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        codec.parse_time(text)


def test_parse_time_reuses_a_second_but_not_its_fraction_or_offset() -> None:
    """The calendar arithmetic is cached per second and offset: what differs must not leak."""
    base = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC).timestamp()
    assert codec.parse_time("2023-11-14T22:13:20.25Z") == base + 0.25
    assert codec.parse_time("2023-11-14T22:13:20.75Z") == base + 0.75
    assert codec.parse_time("2023-11-14T22:13:20z") == base
    assert codec.parse_time("2023-11-14T22:13:20+01:00") == base - 3600
    assert codec.parse_time("2023-11-14T22:13:20-01:00") == base + 3600
    for _ in range(2):  # a refusal is the same the second time, and names the whole text
        with pytest.raises(ValueError, match=r"'2023-02-30T00:00:00\.5Z' is not a valid date"):
            codec.parse_time("2023-02-30T00:00:00.5Z")
        with pytest.raises(ValueError, match=r"outside the years 1\.\.9999 in UTC"):
            codec.parse_time("0001-01-01T00:00:00+01:00")


def test_a_time_that_rounds_into_the_year_10000_is_refused() -> None:
    """Read, it could not be written again (a camera status is re-encoded by the Redis store:
    its message would fail on every redelivery)."""
    with pytest.raises(ValueError, match=r"outside the years 1\.\.9999 in UTC"):
        codec.parse_time("9999-12-31T23:59:59.99999Z")
    last = codec.parse_time("9999-12-31T23:59:59.999Z")
    assert codec.parse_time(codec.format_time(last)) == last


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [
        ("5" * 5000, 1704067200 + 5 / 9),  # past int()'s 4300 digits
        ("0" * 1200 + "1", 1704067200.0),
        ("25" + "0" * 3000, 1704067200.25),
    ],
)
def test_any_number_of_fraction_digits_is_read(fraction: str, expected: float) -> None:
    assert codec.parse_time(f"2024-01-01T00:00:00.{fraction}Z") == expected

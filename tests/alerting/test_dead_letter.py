"""The dead letter of a message: always publishable, cut to fit one record when it must."""

from __future__ import annotations

import pytest

from crowdwatch.alerting.dead_letter import MAX_DEAD_LETTER_BYTES, dead_letter
from crowdwatch.bus.base import CROWD_EVENTS, Message
from crowdwatch.core.codec import DecodeError


def message(value: bytes, headers: tuple[tuple[str, bytes], ...] = (), key: str | None = "cam-1") -> Message:
    return Message(CROWD_EVENTS, 2, 41, key, value, headers, 0.0)


def test_a_dead_letter_is_the_message_with_why_and_where_from() -> None:
    letter = dead_letter(message(b"{bad", (("trace", b"t-1"),)), DecodeError("not valid JSON"), "decode")
    assert (letter.key, letter.value) == ("cam-1", b"{bad")
    assert letter.headers == {
        "trace": b"t-1",
        "error": b"not valid JSON",
        "error-reason": b"decode",
        "source-topic": CROWD_EVENTS.encode(),
        "source-partition": b"2",
        "source-offset": b"41",
    }


def test_a_message_without_a_key_gets_an_empty_one() -> None:
    assert dead_letter(message(b"x", key=None), ValueError("e"), "decode").key == ""


@pytest.mark.parametrize(
    ("error", "header"),
    [
        (DecodeError("id: '\ud800' does not match"), b"id: '\\ud800' does not match"),
        (DecodeError("x" * 5000), b"x" * 1000),
    ],
    ids=["lone surrogate", "long error"],
)
def test_the_error_header_is_always_utf8_and_bounded(error: Exception, header: bytes) -> None:
    letter = dead_letter(message(b"x"), error, "decode")
    assert letter.headers["error"] == header
    letter.headers["error"].decode("utf-8")  # what a consumer of the DLQ will do


@pytest.mark.parametrize(
    ("value_size", "header_size", "max_bytes", "truncated", "headers_dropped"),
    [
        (100, 10, 1000, False, False),  # fits
        (800, 400, 1000, False, True),  # fits once the source's headers go
        (5000, 10, 1000, True, True),  # the value itself is too big
        (5000, 0, 1000, True, False),  # nothing to drop but the value
    ],
)
def test_a_dead_letter_is_cut_to_fit(
    value_size: int, header_size: int, max_bytes: int, truncated: bool, headers_dropped: bool
) -> None:
    value = bytes(range(256)) * (value_size // 256 + 1)
    value = value[:value_size]
    source_headers = (("big", b"h" * header_size),) if header_size else ()
    letter = dead_letter(message(value, source_headers), ValueError("bad"), "decode", max_bytes=max_bytes)
    assert letter.size <= max_bytes
    assert ("truncated-from" in letter.headers) is truncated
    assert ("dropped-headers" in letter.headers) is headers_dropped
    assert letter.value == value[: len(letter.value)]
    if truncated:
        assert letter.headers["truncated-from"] == str(value_size).encode()
        assert letter.size > max_bytes - 20  # cut to fit, not cut short
    else:
        assert letter.value == value
    assert letter.headers["source-offset"] == b"41"  # where the whole message still is


def test_the_default_limit_is_under_kafkas_one_mebibyte() -> None:
    assert MAX_DEAD_LETTER_BYTES < 1024 * 1024

"""The msgspec hot path may only say yes: whatever it decodes, the reference path (parse, schema
validation, `from_envelope`) decodes to the very same event; what it is unsure of it leaves to
the reference. And it does take the well-formed events a worker writes."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from crowdwatch.alerting.fastdecode import decode_valid
from crowdwatch.alerting.validate import InvalidEventError, validate_envelope
from crowdwatch.core import codec
from crowdwatch.core.types import EventType
from event_builders import T0, crowd_event

from .test_validator_conformance import BASES, INVALID, VALID, _mutate

Envelope = dict[str, Any]


def reference(raw: bytes) -> codec.Event | None:
    """What the reference path makes of `raw`; None when it refuses it."""
    try:
        obj = codec.loads(raw)
        validate_envelope(obj)
        return codec.from_envelope(obj)
    except (codec.DecodeError, InvalidEventError):
        return None


def raw_of(envelope: Envelope) -> bytes:
    return json.dumps(envelope, ensure_ascii=False).encode("utf-8")


def assert_only_says_yes(raw: bytes) -> codec.Event | None:
    fast = decode_valid(raw)
    if fast is not None:
        assert reference(raw) == fast, raw
    return fast


@pytest.mark.parametrize("envelope", BASES, ids=range(len(BASES)))
def test_well_formed_events_take_the_fast_path(envelope: Envelope) -> None:
    raw = raw_of(envelope)
    fast = assert_only_says_yes(raw)
    assert fast is not None
    assert codec.encode(fast) == codec.encode(codec.from_envelope(envelope))


@pytest.mark.parametrize("envelope", VALID, ids=range(len(VALID)))
def test_valid_events_decode_alike_or_go_to_the_reference(envelope: Envelope) -> None:
    assert_only_says_yes(raw_of(envelope))


@pytest.mark.parametrize("envelope", INVALID, ids=range(len(INVALID)))
def test_invalid_events_are_left_to_the_reference(envelope: Envelope) -> None:
    assert decode_valid(raw_of(envelope)) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b"\xff\xfe",
        b'{"specversion": "1.0"}',
        raw_of(BASES[0])[:-1],  # truncated
        raw_of(BASES[0]).replace(b'"count":35.0', b'"count":1e400'),
        raw_of(BASES[0]).replace(b'"seq":0', b'"seq":99999999999999999999999'),
        raw_of({**BASES[0], "id": "someone-else:gate:1:0"}),  # the id must be the data's
        raw_of({**BASES[0], "subject": "other-zone"}),
        raw_of({**BASES[0], "time": "2023-02-30T00:00:00Z"}),  # the pattern passes, the date not
    ],
)
def test_odd_bytes_only_ever_agree(raw: bytes) -> None:
    fast = assert_only_says_yes(raw)
    if reference(raw) is None:
        assert fast is None


def test_random_mutations_only_ever_agree() -> None:
    rng = random.Random(2611)
    taken = 0
    for _ in range(1500):
        env = copy.deepcopy(rng.choice(BASES))
        for _ in range(rng.randint(1, 3)):
            _mutate(env, rng)
        if assert_only_says_yes(raw_of(env)) is not None:
            taken += 1
    assert taken > 0  # some mutations (e.g. an unknown data field) stay valid and fast


def test_a_recurring_episode_start_still_reads_each_text() -> None:
    """The start of an episode is parsed once and remembered: each text still gets its own."""
    first = crowd_event(EventType.GATHERING_UPDATED, seq=3)
    second = crowd_event(EventType.GATHERING_UPDATED, seq=3, episode_start=T0 + 0.25)
    for event in (first, second, first, second):
        assert decode_valid(codec.encode(event)) == event

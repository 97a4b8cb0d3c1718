"""The fast validator (fastjsonschema, the accept path) and the reference (jsonschema, which writes
the dead-letter messages) judge every envelope alike: tables of valid and invalid envelopes, then
seeded random mutations of valid ones."""

from __future__ import annotations

import copy
import logging
import random
import re
from collections.abc import Callable
from typing import Any

import fastjsonschema
import pytest

from crowdwatch.alerting import validate
from crowdwatch.alerting.validate import InvalidEventError, python_dollar, validate_envelope
from crowdwatch.core import codec
from crowdwatch.core.types import EventType, GeoPoint, Severity

from .builders import camera_event, crowd_event

Envelope = dict[str, Any]
BASES: list[Envelope] = [
    codec.to_envelope(crowd_event()),
    codec.to_envelope(crowd_event(EventType.GATHERING_UPDATED, seq=2, density_per_m2=2.5, method="density")),
    codec.to_envelope(crowd_event(EventType.GATHERING_ENDED, seq=5, count=0.0, severity=Severity.LOW)),
    codec.to_envelope(camera_event()),
    codec.to_envelope(camera_event(EventType.CAMERA_ONLINE, location=GeoPoint(31.0, 121.0))),
    codec.to_envelope(camera_event(EventType.CAMERA_DEGRADED, reason="4 fps")),
]
CROWD, CAMERA = BASES[0], BASES[4]


def verdicts(envelope: Envelope) -> tuple[bool, bool]:
    """(fast, reference): does each accept `envelope`?"""
    event_type = envelope["type"]
    try:
        validate._fast_validators()[event_type](envelope)
        fast = True
    except Exception:
        fast = False
    return fast, validate._validators()[event_type].is_valid(envelope)


def changed(base: Envelope, path: str, value: object) -> Envelope:
    """`base` with the field at dotted `path` set to `value` (deleted for DELETE)."""
    env = copy.deepcopy(base)
    *parents, leaf = path.split(".")
    target = env
    for p in parents:
        target = target[p]
    if value is DELETE:
        del target[leaf]
    else:
        target[leaf] = value
    return env


DELETE = object()

VALID = [
    *BASES,
    changed(CROWD, "traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    changed(CROWD, "abcdefghij0123456789", "an extension name of 20 characters"),
    changed(CROWD, "data.queue_length", 4),
    changed(CROWD, "data.seq", 2.0),  # an integer in 2020-12
    changed(CROWD, "data.density_per_m2", 0),
    changed(CROWD, "data.location", {"lat": 90, "lon": -180}),
    changed(CROWD, "data.model", "modèle ✓"),
    changed(CROWD, "data.schema_version", "1.12"),
    changed(CROWD, "time", "2023-11-14t22:13:20.123456789+05:30"),
    changed(CAMERA, "data.location", None),
    # `$` in the patterns also matches before a final newline, as Python's `re` reads it: the
    # reference accepted these before the fast path existed, and both still do.
    changed(CROWD, "data.camera_id", "cam-1\n"),
    changed(CROWD, "source", "crowdwatch/camera/cam-1\n"),
    changed(CROWD, "traceparent\n", "x"),
]

INVALID = [
    changed(CROWD, "id", DELETE),
    changed(CROWD, "id", ""),
    changed(CROWD, "id", 5),
    changed(CROWD, "specversion", "0.3"),
    changed(CROWD, "specversion", 1.0),
    changed(CROWD, "time", "noon"),
    changed(CROWD, "time", "2023-11-14T22:13:20.123Z\n\n"),
    changed(CROWD, "source", "somewhere/else"),
    changed(CROWD, "datacontenttype", "text/plain"),
    changed(CROWD, "dataschema", f"{codec.SCHEMA_BASE_URI}camera.offline.json"),
    changed(CROWD, "Bad_Extension", 1),
    changed(CROWD, "abcdefghij0123456789x", "21 characters"),
    changed(CROWD, "subject", ""),
    changed(CROWD, "data", []),
    changed(CROWD, "data.count", DELETE),
    changed(CROWD, "data.count", -1),
    changed(CROWD, "data.count", "12"),
    changed(CROWD, "data.count", True),
    changed(CROWD, "data.count", None),
    changed(CROWD, "data.seq", 1.5),
    changed(CROWD, "data.seq", -1),
    changed(CROWD, "data.seq", False),
    changed(CROWD, "data.severity", "extreme"),
    changed(CROWD, "data.severity", 1),
    changed(CROWD, "data.method", "guess"),
    changed(CROWD, "data.location", {"lat": 95, "lon": 0}),
    changed(CROWD, "data.location", {"lat": 0, "lon": 0, "alt": 3}),
    changed(CROWD, "data.location", {"lat": 0}),
    changed(CROWD, "data.location", None),
    changed(CROWD, "data.camera_id", "has space"),
    changed(CROWD, "data.camera_id", "-leading-dash"),
    changed(CROWD, "data.zone_id", "z" * 65),
    changed(CROWD, "data.schema_version", "2.0"),
    changed(CROWD, "data.schema_version", "1."),
    changed(CROWD, "data.density_per_m2", "high"),
    changed(CROWD, "data.density_per_m2", -0.5),
    changed(CROWD, "data.episode_start", 5),
    changed(CAMERA, "data.reason", DELETE),
    changed(CAMERA, "data.location", {"lat": 91, "lon": 0}),
    changed(CAMERA, "data.location", "here"),
    changed(CAMERA, "type", "crowd.gathering.started"),
]


@pytest.mark.parametrize("envelope", VALID, ids=range(len(VALID)))
def test_both_accept(envelope: Envelope) -> None:
    assert verdicts(envelope) == (True, True)


@pytest.mark.parametrize("envelope", INVALID, ids=range(len(INVALID)))
def test_both_reject(envelope: Envelope) -> None:
    assert verdicts(envelope) == (False, False)


# What a mutation may put somewhere: wrong types, boundary numbers, near-miss strings.
VALUES: list[object] = [
    None, True, False, 0, -1, 2.0, 1.5, 91, -181, 1e300, float("inf"), "", "x", "x\n", "x\n\n",
    "has space", "1.0", "1.x", "low", "detector", "2023-01-01T00:00:00Z", "crowdwatch/camera/c",
    "z" * 64, "z" * 65, [], [1], {}, {"lat": 0, "lon": 0}, {"lat": 0, "lon": 0, "x": 1},
]  # fmt: skip
NAMES = ["ext", "EXT", "ext\n", "e" * 20, "e" * 21, "lat", "data", "x-y"]


def _objects(node: Any, out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        out.append(node)
        for value in node.values():
            _objects(value, out)
    return out


def _mutate(env: Envelope, rng: random.Random) -> None:
    """One random change somewhere in `env`: replace a value, delete a key, or add one."""
    target = rng.choice(_objects(env, []))
    action = rng.randrange(3)
    if action == 0 and target:
        target[rng.choice(list(target))] = copy.deepcopy(rng.choice(VALUES))
    elif action == 1 and target:
        del target[rng.choice(list(target))]
    else:
        target[rng.choice(NAMES)] = copy.deepcopy(rng.choice(VALUES))


def test_random_mutations_are_judged_alike() -> None:
    rng = random.Random(2020_12)
    disagreements = []
    for i in range(1500):
        env = copy.deepcopy(rng.choice(BASES))
        for _ in range(rng.randint(1, 3)):
            _mutate(env, rng)
        if not isinstance(env.get("type"), str) or env["type"] not in {t.value for t in EventType}:
            continue  # an unknown type is refused before either validator runs
        fast, reference = verdicts(env)
        if fast != reference:
            disagreements.append((i, fast, reference, env))
    assert disagreements == []


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("^a$", "^a(?=\\n?\\Z)"),
        ("^a\\$b$", "^a\\$b(?=\\n?\\Z)"),  # an escaped dollar is a literal
        ("^[$a]$", "^[$a](?=\\n?\\Z)"),  # so is one in a character class
        ("^[\\]$]x$", "^[\\]$]x(?=\\n?\\Z)"),
        ("^(a|b$)", "^(a|b(?=\\n?\\Z))"),
        ("abc", "abc"),
    ],
)
def test_python_dollar(pattern: str, expected: str) -> None:
    assert python_dollar(pattern) == expected


def _rejecting(obj: object) -> None:
    raise fastjsonschema.JsonSchemaValueException("rejected")


def test_a_disagreement_keeps_the_references_verdict(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Should the fast path ever refuse what the reference accepts, the event is accepted (as
    before there was a fast path) and the bug is logged."""
    rejecting: dict[str, Callable[[Any], object]] = dict.fromkeys(validate._fast_validators(), _rejecting)
    monkeypatch.setattr(validate, "_fast_validators", lambda: rejecting)
    with caplog.at_level(logging.ERROR):
        assert validate_envelope(CROWD) is None  # type: ignore[func-returns-value]
    assert "validators disagree" in caplog.text
    with pytest.raises(InvalidEventError, match=re.escape("data.count: -1 is less than the minimum of 0")):
        validate_envelope(changed(CROWD, "data.count", -1))

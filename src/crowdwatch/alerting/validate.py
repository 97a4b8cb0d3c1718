"""Validate decoded CloudEvent objects against the JSON Schema files in `crowdwatch.schemas`."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from crowdwatch.core.types import EventType
from crowdwatch.schemas import load_schema, schema_names

_MAX_ERRORS = 5


class InvalidEventError(ValueError):
    """A JSON object that breaks the event contract. The message lists each problem with its
    path, e.g. `data.count: -1 is less than the minimum of 0`."""


@functools.cache
def _validators() -> dict[str, Draft202012Validator]:
    # Built on first use, not at import: reading package files is I/O.
    schemas = {name: load_schema(name) for name in schema_names()}
    registry: Registry[Any] = Registry().with_resources(
        (s["$id"], Resource.from_contents(s, default_specification=DRAFT202012)) for s in schemas.values()
    )
    return {t.value: Draft202012Validator(schemas[t.value], registry=registry) for t in EventType}


def validate_envelope(obj: object) -> None:
    """Raise InvalidEventError unless `obj` is a valid crowdwatch CloudEvent of a known type."""
    if not isinstance(obj, Mapping):
        raise InvalidEventError(f"expected a JSON object, got {type(obj).__name__}")
    event_type = obj.get("type")
    validator = _validators().get(event_type) if isinstance(event_type, str) else None
    if validator is None:
        known = ", ".join(t.value for t in EventType)
        raise InvalidEventError(f"type: unknown event type {event_type!r:.60} (expected one of {known})")
    errors = sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        problems = [
            f"{'.'.join(str(p) for p in e.absolute_path) or '(envelope)'}: {e.message:.200}"
            for e in errors[:_MAX_ERRORS]
        ]
        if len(errors) > _MAX_ERRORS:
            problems.append(f"... and {len(errors) - _MAX_ERRORS} more")
        raise InvalidEventError(f"{event_type}: " + "; ".join(problems))

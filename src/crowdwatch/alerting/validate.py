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


_COMMON = "common.json"
_DEFS = "#/$defs/"


def inline_refs(node: Any, defs: Mapping[str, Any]) -> Any:
    """The schema with every `common.json#/$defs/X` (and `#/$defs/X` inside common) replaced by
    the definition itself. Same rules, but the validator no longer resolves references on every
    message, which was a third of its time (benchmarks/alerting_throughput.py profile)."""
    if isinstance(node, list):
        return [inline_refs(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.removeprefix(_COMMON).removeprefix(_DEFS)
        if name != ref and name in defs and set(node) == {"$ref"}:
            return inline_refs(defs[name], defs)
    return {k: inline_refs(v, defs) for k, v in node.items()}


@functools.cache
def _validators() -> dict[str, Draft202012Validator]:
    # Built on first use, not at import: reading package files is I/O.
    schemas = {name: load_schema(name) for name in schema_names()}
    registry: Registry[Any] = Registry().with_resources(
        (s["$id"], Resource.from_contents(s, default_specification=DRAFT202012)) for s in schemas.values()
    )
    defs = schemas["common"]["$defs"]
    return {
        t.value: Draft202012Validator(inline_refs(schemas[t.value], defs), registry=registry)
        for t in EventType
    }


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

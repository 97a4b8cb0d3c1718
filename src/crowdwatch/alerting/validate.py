"""Validate decoded CloudEvent objects against the JSON Schema files in `crowdwatch.schemas`.

Two validators judge the same inlined schemas. The accept path runs code that fastjsonschema
generated from them (a few microseconds per event); only when it rejects does jsonschema run,
to write the detailed message (every problem with its field path) that the dead-letter topic
carries. jsonschema stays the reference: tests/alerting/test_validator_conformance.py checks
that both judge alike.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import fastjsonschema
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from crowdwatch.core.types import EventType
from crowdwatch.schemas import load_schema, schema_names

log = logging.getLogger(__name__)

_MAX_ERRORS = 5

FastValidator = Callable[[Any], object]


class InvalidEventError(ValueError):
    """A JSON object that breaks the event contract. The message lists each problem with its
    path, e.g. `data.count: -1 is less than the minimum of 0`."""


_COMMON = "common.json"
_DEFS = "#/$defs/"
# An unescaped `$` outside a character class.
_DOLLAR: Final = re.compile(r"\\.|\[(?:\\.|[^\]\\])*\]|(\$)", re.DOTALL)
# What `$` means to Python's `re` without MULTILINE: the end, or just before a final newline.
_PYTHON_END: Final = r"(?=\n?\Z)"


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


def python_dollar(pattern: str) -> str:
    """`pattern` with each end anchor `$` spelled out as Python's `re` reads it.

    jsonschema matches patterns with `re.search`, where `$` also matches before a trailing
    newline; fastjsonschema rewrites every `$` to `\\Z`, which does not. Written as a lookahead,
    the anchor means the same to both, so they accept the same strings."""
    return _DOLLAR.sub(lambda m: _PYTHON_END if m.group(1) else m.group(0), pattern)


def _python_dollars(node: Any) -> Any:
    """The schema with `python_dollar` applied to every `pattern` and `patternProperties` key."""
    if isinstance(node, list):
        return [_python_dollars(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "pattern" and isinstance(value, str):
            out[key] = python_dollar(value)
        elif key == "patternProperties" and isinstance(value, dict):
            out[key] = {python_dollar(k): _python_dollars(v) for k, v in value.items()}
        else:
            out[key] = _python_dollars(value)
    return out


@functools.cache
def _inlined() -> dict[str, dict[str, Any]]:
    # Read on first use, not at import: reading package files is I/O.
    schemas = {name: load_schema(name) for name in schema_names()}
    defs = schemas["common"]["$defs"]
    return {t.value: inline_refs(schemas[t.value], defs) for t in EventType}


@functools.cache
def _validators() -> dict[str, Draft202012Validator]:
    """The reference validators (jsonschema), which also write the detailed messages."""
    schemas = {name: load_schema(name) for name in schema_names()}
    registry: Registry[Any] = Registry().with_resources(
        (s["$id"], Resource.from_contents(s, default_specification=DRAFT202012)) for s in schemas.values()
    )
    return {name: Draft202012Validator(schema, registry=registry) for name, schema in _inlined().items()}


def _no_remote_refs(uri: str) -> Any:
    raise ValueError(f"schema reference {uri!r} was not inlined; nothing is fetched")


@functools.cache
def _fast_validators() -> dict[str, FastValidator]:
    """Generated validators for the accept path. Formats are annotations only, as for the
    reference (no format checker); no defaults are filled in. (Its `detailed_exceptions=False`
    fails to compile `const` in 2.22, and details cost nothing on the accept path anyway.)"""
    refuse = {scheme: _no_remote_refs for scheme in ("http", "https", "file", "ftp")}
    return {
        name: fastjsonschema.compile(
            _python_dollars(schema),
            handlers=refuse,
            use_default=False,
            use_formats=False,
        )
        for name, schema in _inlined().items()
    }


def validate_envelope(obj: object) -> None:
    """Raise InvalidEventError unless `obj` is a valid crowdwatch CloudEvent of a known type."""
    if not isinstance(obj, Mapping):
        raise InvalidEventError(f"expected a JSON object, got {type(obj).__name__}")
    event_type = obj.get("type")
    fast = _fast_validators().get(event_type) if isinstance(event_type, str) else None
    if fast is None:
        known = ", ".join(t.value for t in EventType)
        raise InvalidEventError(f"type: unknown event type {event_type!r:.60} (expected one of {known})")
    try:
        fast(obj)
        return
    except fastjsonschema.JsonSchemaValueException:
        pass
    assert isinstance(event_type, str)
    explain_invalid(obj, event_type)
    # The reference found nothing wrong: the validators disagree (a bug). Its verdict stands,
    # as it did before the fast path existed.
    log.error("schema validators disagree on a %s event: fastjsonschema rejected it", event_type)


def explain_invalid(obj: Mapping[str, Any], event_type: str) -> None:
    """Raise InvalidEventError listing what the reference validator finds wrong with `obj`
    (a known `event_type`); return when it finds nothing."""
    validator = _validators()[event_type]
    errors = sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        problems = [
            f"{'.'.join(str(p) for p in e.absolute_path) or '(envelope)'}: {e.message:.200}"
            for e in errors[:_MAX_ERRORS]
        ]
        if len(errors) > _MAX_ERRORS:
            problems.append(f"... and {len(errors) - _MAX_ERRORS} more")
        raise InvalidEventError(f"{event_type}: " + "; ".join(problems))

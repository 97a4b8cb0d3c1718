"""Which of a model's classes count as a person."""

from __future__ import annotations

import ast
from collections.abc import Mapping

from crowdwatch.detectors.catalog import CatalogEntry

_PERSON_NAMES = frozenset({"person"})  # COCO and most stock models


class ClassMappingError(ValueError):
    """The model's classes do not tell us which of them is a person."""


def person_class_ids(names: Mapping[int, str] | None, entry: CatalogEntry | None) -> frozenset[int]:
    """The catalog entry decides when there is one (checked against the model's own class
    names when it has any, so a swapped file is caught); otherwise classes named 'person'."""
    if entry is not None:
        if names is not None and tuple(names[i] for i in sorted(names)) != entry.class_names:
            raise ClassMappingError(
                f"model classes {dict(names)} differ from the catalog's {entry.class_names} "
                f"for '{entry.name}': the file is not the catalog's model"
            )
        return entry.person_classes
    if not names:
        raise ClassMappingError(
            "the model carries no class names, so its person class is unknown: use a catalog model"
        )
    ids = frozenset(i for i, n in names.items() if n.strip().lower() in _PERSON_NAMES)
    if not ids:
        raise ClassMappingError(f"none of the model's classes {dict(names)} is 'person'")
    return ids


def names_from_onnx_metadata(metadata: Mapping[str, str]) -> dict[int, str] | None:
    """Class names that Ultralytics' ONNX export stores as a Python dict literal in the model's
    metadata ("{0: 'person', ...}"); None when absent or unreadable."""
    raw = metadata.get("names")
    if raw is None:
        return None
    try:
        parsed = ast.literal_eval(raw)  # literal_eval only: metadata is data, never code
    except (ValueError, SyntaxError):
        return None
    if not isinstance(parsed, dict):
        return None
    return {int(k): str(v) for k, v in parsed.items()}

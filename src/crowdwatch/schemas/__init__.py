"""JSON Schema (draft 2020-12) files of the event contract (DESIGN 3), one per event type plus
`common.json`. Read on demand through importlib.resources, so they also work from a wheel; no
file is read at import time. Validation itself is in `crowdwatch.alerting.validate`."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

COMMON = "common"


def schema_names() -> list[str]:
    """Names without `.json`: the six event types and `common`."""
    return sorted(
        entry.name.removesuffix(".json")
        for entry in files(__name__).iterdir()
        if entry.name.endswith(".json")
    )


def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema `name` (an event type such as `camera.offline`, or `common`)."""
    resource = files(__name__).joinpath(f"{name}.json")
    if not resource.is_file():
        raise KeyError(f"no schema named '{name}' (have: {', '.join(schema_names())})")
    schema: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    return schema

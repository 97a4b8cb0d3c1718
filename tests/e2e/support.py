"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def demo_config_dict() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    assert isinstance(data, dict)
    return data


def offline(data: dict[str, Any], url: Path) -> dict[str, Any]:
    """The demo config turned into a deterministic offline analysis of a file: every sampled
    frame analysed, no looping, video time as event time, no metrics port."""
    cam = data["cameras"][0]
    cam.update(url=str(url), loop=False, realtime=False)
    data["metrics"] = {"enabled": False}
    return data

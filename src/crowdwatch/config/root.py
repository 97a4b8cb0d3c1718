"""The whole configuration file and its cross-references, plus loading with readable errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import Field, ValidationError, model_validator

from crowdwatch.config.backends import (
    BusConfig,
    MemoryBusConfig,
    MemoryStoreConfig,
    MetricsConfig,
    StoreConfig,
)
from crowdwatch.config.base import StrictModel
from crowdwatch.config.camera import CameraConfig
from crowdwatch.config.centers import LEVEL_DEPTH, CenterConfig, RoutingConfig
from crowdwatch.config.detector import DetectorConfig, OnnxDetectorConfig
from crowdwatch.config.rules import RulesConfig


class AppConfig(StrictModel):
    cameras: list[CameraConfig] = Field(min_length=1, description="Cameras to watch.")
    detector: DetectorConfig = Field(
        default_factory=OnnxDetectorConfig, description="Person detector backend (by `type`)."
    )
    rules: RulesConfig = Field(
        default_factory=RulesConfig, description="Gathering rules; zones may override them."
    )
    centers: list[CenterConfig] = Field(
        min_length=1, description="Operations centers: districts, streets, communities."
    )
    routing: RoutingConfig = Field(default_factory=RoutingConfig, description="Routing fallbacks.")
    bus: BusConfig = Field(default_factory=MemoryBusConfig, description="Event bus backend.")
    store: StoreConfig = Field(default_factory=MemoryStoreConfig, description="Alert store backend.")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="Prometheus metrics.")
    models_dir: str | None = Field(
        None,
        description="Where fetched model files live. Default: $CROWDWATCH_MODELS_DIR, else "
        "~/.cache/crowdwatch/models.",
    )

    @model_validator(mode="after")
    def _references(self) -> Self:
        problems: list[str] = []
        camera_ids = [c.id for c in self.cameras]
        for dup in sorted({c for c in camera_ids if camera_ids.count(c) > 1}):
            problems.append(f"camera id '{dup}' appears twice")
        centers = {c.id: c for c in self.centers}
        if len(centers) != len(self.centers):
            ids = [c.id for c in self.centers]
            for dup in sorted({c for c in ids if ids.count(c) > 1}):
                problems.append(f"center id '{dup}' appears twice")
        for c in self.centers:
            if c.parent is None:
                continue
            parent = centers.get(c.parent)
            if parent is None:
                problems.append(f"center '{c.id}' has parent '{c.parent}', which is not a center")
            elif LEVEL_DEPTH[parent.level] >= LEVEL_DEPTH[c.level]:
                problems.append(
                    f"center '{c.id}' ({c.level}) cannot have parent '{parent.id}' ({parent.level}): "
                    "a parent must be a higher level"
                )
        for cam in self.cameras:
            if cam.center is not None and cam.center not in centers:
                problems.append(
                    f"camera '{cam.id}' is routed to center '{cam.center}', which is not a center"
                )
        if not any(c.level == "district" for c in self.centers):
            problems.append("at least one district center is needed (the top of the hierarchy)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def center(self, center_id: str) -> CenterConfig:
        for c in self.centers:
            if c.id == center_id:
                return c
        raise KeyError(center_id)


class ConfigError(Exception):
    """A configuration that cannot be used. `problems` has one line per problem, each naming
    the field path, e.g. `cameras[0].zones[1].polygon: ...`."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("onnx", "ultralytics", "memory", "kafka", "redis") and out:
            # pydantic puts the discriminator tag in the path; users never wrote it.
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def format_validation_error(err: ValidationError) -> list[str]:
    """One line per problem. Never echoes input values: they may hold credentials."""
    lines = []
    for e in err.errors(include_url=False, include_input=False):
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (not allowed here)"
        lines.append(f"{_path(tuple(e['loc']))}: {msg}")
    return lines


def parse_config(data: Any, source: str = "<config>") -> AppConfig:
    if not isinstance(data, dict):
        raise ConfigError(source, ["(top level): expected a mapping of sections (cameras, centers, ...)"])
    try:
        return AppConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(source, format_validation_error(err)) from None


def load_config(path: str | Path) -> AppConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(p), ["(file): no such file"]) from None
    except OSError as exc:
        raise ConfigError(str(p), [f"(file): cannot read: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(str(p), [f"(yaml): {problem} at {where}"]) from None
    return parse_config(data, str(p))

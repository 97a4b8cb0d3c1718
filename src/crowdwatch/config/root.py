"""The whole configuration file and its cross-references, plus loading with readable errors."""

from __future__ import annotations

import re
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
from crowdwatch.config.base import FieldProblemsError, StrictModel
from crowdwatch.config.camera import ID_PATTERN, CameraConfig
from crowdwatch.config.centers import LEVEL_DEPTH, CenterConfig, RoutingConfig
from crowdwatch.config.counting import CountingConfig
from crowdwatch.config.detector import DetectorConfig, OnnxDetectorConfig
from crowdwatch.config.process import GcConfig
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
    counting: CountingConfig = Field(
        default_factory=CountingConfig, description="Density model, auto switching and tiling."
    )
    routing: RoutingConfig = Field(default_factory=RoutingConfig, description="Routing fallbacks.")
    bus: BusConfig = Field(default_factory=MemoryBusConfig, description="Event bus backend.")
    store: StoreConfig = Field(default_factory=MemoryStoreConfig, description="Alert store backend.")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="Prometheus metrics.")
    gc: GcConfig = Field(
        default_factory=GcConfig, description="Python garbage collector tuning of a running role."
    )
    models_dir: str | None = Field(
        None,
        description="Where fetched model files live. Default: $CROWDWATCH_MODELS_DIR, else "
        "~/.cache/crowdwatch/models.",
    )

    @model_validator(mode="after")
    def _references(self) -> Self:
        problems: list[tuple[str, str]] = []
        first_camera: dict[str, int] = {}
        for i, cam in enumerate(self.cameras):
            if cam.id in first_camera:
                problems.append(
                    (
                        f"cameras[{i}].id",
                        f"camera id '{cam.id}' is already used by cameras[{first_camera[cam.id]}]",
                    )
                )
            first_camera.setdefault(cam.id, i)
        first_center: dict[str, int] = {}
        for i, c in enumerate(self.centers):
            if c.id in first_center:
                problems.append(
                    (
                        f"centers[{i}].id",
                        f"center id '{c.id}' is already used by centers[{first_center[c.id]}]",
                    )
                )
            first_center.setdefault(c.id, i)
        centers = {c.id: c for c in self.centers}
        for i, c in enumerate(self.centers):
            if c.parent is None:
                continue
            parent = centers.get(c.parent)
            if parent is None:
                problems.append((f"centers[{i}].parent", f"'{c.parent}' is not a center id"))
            elif LEVEL_DEPTH[parent.level] >= LEVEL_DEPTH[c.level]:
                problems.append(
                    (
                        f"centers[{i}].parent",
                        f"a {c.level} center cannot have the {parent.level} center '{parent.id}' as "
                        "parent: the parent must be a higher level (district > street > community)",
                    )
                )
        for i, cam in enumerate(self.cameras):
            if cam.center is not None and cam.center not in centers:
                problems.append((f"cameras[{i}].center", f"'{cam.center}' is not a center id"))
            for j, zone in enumerate(cam.zones):
                if zone.rules is None:
                    continue
                try:
                    zone.rules.apply(self.rules)
                except ValidationError as err:
                    # A zone override is valid only together with the global rules it changes.
                    base = f"cameras[{i}].zones[{j}].rules"
                    problems.extend(
                        (_join(base, path), f"{msg} (zone rules merged with the global rules)")
                        for path, msg in _problems(err)
                    )
        if not any(c.level == "district" for c in self.centers):
            problems.append(("centers", "at least one district center is needed (the top of the hierarchy)"))
        if problems:
            raise FieldProblemsError(problems)
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


def _join(base: str, sub: str) -> str:
    """`cameras[0]` + `zones[1].id` -> `cameras[0].zones[1].id`; either may be the top level."""
    if not sub or sub == "(top level)":
        return base
    if not base or base == "(top level)":
        return sub
    return f"{base}{sub}" if sub.startswith("[") else f"{base}.{sub}"


def format_validation_error(err: ValidationError) -> list[str]:
    """One line per problem. Never echoes input values: they may hold credentials."""
    return [f"{path}: {msg}" for path, msg in _problems(err)]


def _problems(err: ValidationError) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for e in err.errors(include_url=False, include_input=False):
        path = _path(tuple(e["loc"]))
        ctx = e.get("ctx") or {}
        error = ctx.get("error")
        if isinstance(error, FieldProblemsError):
            out.extend((_join(path, sub), msg) for sub, msg in error.problems)
            continue
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (not allowed here)"
        elif e["type"] == "missing":
            msg = "required field is missing"
        elif e["type"] == "string_pattern_mismatch" and ctx.get("pattern") == ID_PATTERN:
            msg = "ids are 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        elif e["type"] == "union_tag_invalid":
            path = _join(path, str(ctx["discriminator"]).strip("'"))
            msg = f"unknown type '{ctx['tag']}' (use one of {ctx['expected_tags']})"
        elif e["type"] == "union_tag_not_found":
            path = _join(path, str(ctx["discriminator"]).strip("'"))
            msg = "missing: this section needs a type"
        out.append((path, msg))
    return out


def parse_config(data: Any, source: str = "<config>") -> AppConfig:
    if data is None:
        raise ConfigError(source, ["(top level): the configuration is empty"])
    if not isinstance(data, dict):
        raise ConfigError(source, ["(top level): expected a mapping of sections (cameras, centers, ...)"])
    try:
        return AppConfig.model_validate(data)
    except ValidationError as err:
        problems = format_validation_error(err)
    # Raised outside the except block so that the ValidationError, which holds the input values
    # (camera URLs with credentials), is not even kept as __context__.
    raise ConfigError(source, problems)


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader, except that a key repeated in one mapping is an error: plain YAML loading
    keeps the last one, so a second `cameras:` section would silently replace the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` merges keys that the mapping may then override
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:
                continue  # an unhashable key: SafeLoader reports it
            if first is not key_node:
                # Keys are field names and ids; anything else might be a pasted URL with a password.
                plain = isinstance(key, str | int) and _PLAIN_KEY.fullmatch(str(key))
                name = f"key '{key}'" if plain else "key"
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate {name} (first at line {first.start_mark.line + 1}, column "
                    f"{first.start_mark.column + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def load_config(path: str | Path) -> AppConfig:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(str(p), ["(file): no such file"]) from None
    except OSError as exc:
        raise ConfigError(str(p), [f"(file): cannot read: {exc.strerror}"]) from None
    # Problems are raised outside the except blocks, as in parse_config: decode and YAML errors
    # hold the file's text (camera URLs with credentials), not to be kept as __context__.
    problem = None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        problem = (
            f"(file): not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start} (line "
            f"{line}) cannot be decoded; save the file as UTF-8"
        )
    if problem is not None:
        raise ConfigError(str(p), [problem])
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.reader.ReaderError as exc:
        # A character YAML does not allow (NUL, a control character); `position` counts characters.
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        what = f"unacceptable character #x{exc.character:04x}: {exc.reason}"
        problem = f"(yaml): {what} at line {line}, column {column}"
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        what = getattr(exc, "problem", None) or str(exc)
        problem = f"(yaml): {what} at {where}"
    if problem is not None:
        raise ConfigError(str(p), [problem])
    return parse_config(data, str(p))

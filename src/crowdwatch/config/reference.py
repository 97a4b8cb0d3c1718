"""The configuration reference, generated from the models' own field descriptions, so the
documentation cannot drift from what the code accepts (tests compare it with docs/)."""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from crowdwatch.config.root import AppConfig


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        out.extend(_models_in(arg))
    return out


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _type_name(get_args(annotation)[0])
    if origin is Literal:
        return " \\| ".join(repr(a) for a in get_args(annotation))
    if origin in (Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in get_args(annotation))
    if origin in (list, tuple, dict):
        inner = ", ".join(_type_name(a) for a in get_args(annotation) if a is not Ellipsis)
        return f"{origin.__name__}[{inner}]"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type):
        return (
            annotation.__name__.removesuffix("Config")
            if issubclass(annotation, BaseModel)
            else annotation.__name__
        )
    return str(annotation)


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return "(see section)" if _models_in(field.annotation) else "`[]`"
    if field.default is PydanticUndefined:
        return "**required**"
    return f"`{field.default!r}`".replace("None", "null").replace("True", "true").replace("False", "false")


def _section(model: type[BaseModel], path: str, out: list[str], seen: set[tuple[str, str]]) -> None:
    key = (path, model.__name__)
    if key in seen:
        return
    seen.add(key)
    title = path or "top level"
    out.append(f"### `{title}`" + (f" ({model.__name__.removesuffix('Config')})" if path else ""))
    out.append("")
    if model.__doc__ and model is not AppConfig:
        out.append(" ".join(model.__doc__.split()))
        out.append("")
    out.append("| key | type | default | description |")
    out.append("|---|---|---|---|")
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        desc = (field.description or "").replace("|", "\\|")
        out.append(f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | {desc} |")
        list_like = get_origin(field.annotation) is list
        for sub in _models_in(field.annotation):
            nested.append(((f"{path}.{name}" if path else name) + ("[]" if list_like else ""), sub))
    out.append("")
    for sub_path, sub in nested:
        _section(sub, sub_path, out, seen)


def config_reference() -> str:
    out = [
        "# Configuration reference",
        "",
        "Generated from the configuration models by `crowdwatch config-reference`; do not edit.",
        "Unknown keys are errors. Where a section can be one of several backends, its `type` picks it.",
        "",
    ]
    _section(AppConfig, "", out, set())
    return "\n".join(out).rstrip() + "\n"

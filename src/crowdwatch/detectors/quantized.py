"""int8 detectors made on this machine from a catalog model, never downloaded.

Static quantisation is calibrated on real frames, and the only labeled frames here are
research-only data: the int8 file derives from them, so it can never be a catalog artifact.
Each int8 model is a recipe instead; `crowdwatch models quantize PARENT --calibration-data
FOLDER` makes it (detectors/quantize.py) into `<models_dir>/<NAME>/model.onnx` with
`quantized.json` beside it (what it was calibrated on), and a config names it like any model
(`detector: {type: onnx, model: yolov8s-person-int8}`). It keeps its parent's class mapping and
licence. Nothing here imports onnxruntime: resolving costs no more than for a catalog model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from crowdwatch.detectors.catalog import (
    CATALOG,
    CatalogEntry,
    ModelFormat,
    ModelNotFetchedError,
    ResolvedModel,
    UnknownModelError,
    default_models_dir,
    resolve,
)

QUANTIZED_ONNX = "model.onnx"
QUANTIZED_INFO = "quantized.json"


@dataclass(frozen=True, slots=True)
class QuantizeRecipe:
    name: str
    parent: str
    """The fp32 ONNX catalog model that is quantised."""
    description: str
    dataset: str
    """The labeled folder's name under the data dir; `--calibration-data` may point elsewhere."""
    frames: str
    """Calibration frames as ranges (training frames only: keep the rest for evaluation)."""
    limit: int
    """Frames used, spread evenly over `frames`."""

    @property
    def command(self) -> str:
        return f"crowdwatch models quantize {self.parent} --calibration-data ../shared/data/{self.dataset}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RECIPES: Mapping[str, QuantizeRecipe] = MappingProxyType(
    {
        r.name: r
        for r in (
            QuantizeRecipe(
                name="yolov8s-person-int8",
                parent="yolov8s-person-onnx",
                description="yolov8s-person-onnx quantised to int8 (QDQ, per-channel weights, "
                "box-decoding tail in float), calibrated on 100 Mall training frames; "
                "~2x faster on CPU, counts within ~0.1 MAE of fp32",
                dataset="mall",
                frames="1-279",
                limit=100,
            ),
        )
    }
)


class ModelNotQuantizedError(ModelNotFetchedError):
    """An int8 model's recipe is known but it has not been made in this models dir."""


def quantized_path(name: str, models_dir: Path) -> Path:
    return models_dir / name / QUANTIZED_ONNX


def recipe_for(name: str, recipes: Mapping[str, QuantizeRecipe] = RECIPES) -> QuantizeRecipe:
    """The recipe named `name`, or the one whose parent is `name`."""
    if name in recipes:
        return recipes[name]
    for recipe in recipes.values():
        if recipe.parent == name:
            return recipe
    known = ", ".join(sorted({r.parent for r in recipes.values()} | set(recipes)))
    raise UnknownModelError(f"no int8 recipe for '{name}' (known: {known})")


def derived_entry(recipe: QuantizeRecipe, catalog: Mapping[str, CatalogEntry] = CATALOG) -> CatalogEntry:
    """The parent's entry under the int8 name: same classes, person mapping, input size,
    architecture, licence and source package (the weights it was made from)."""
    return replace(
        catalog[recipe.parent],
        name=recipe.name,
        description=recipe.description,
        sibling=None,
        build=None,
        built_filename=None,
    )


def resolve_detector_model(
    model_ref: str,
    models_dir: Path,
    fmt: ModelFormat,
    *,
    recipes: Mapping[str, QuantizeRecipe] = RECIPES,
    catalog: Mapping[str, CatalogEntry] = CATALOG,
) -> ResolvedModel:
    """An int8 model made here (a clear error naming the quantize command when it is missing),
    else whatever `catalog.resolve` makes of the reference."""
    recipe = recipes.get(model_ref)
    if recipe is None:
        return resolve(model_ref, models_dir, fmt, catalog=catalog)
    if fmt != "onnx":
        raise UnknownModelError(f"model '{recipe.name}' is an int8 ONNX model: use detector type onnx")
    path = quantized_path(recipe.name, models_dir)
    if not path.is_file():
        hint = "" if models_dir == default_models_dir() else f" --models-dir {models_dir}"
        raise ModelNotQuantizedError(
            f"model '{recipe.name}' is made on this machine (calibrated on labeled research data, "
            f"never downloaded) and it is not in {models_dir}: run `{recipe.command}{hint}` "
            "(point --calibration-data at your copy of that folder)"
        )
    return ResolvedModel(path, derived_entry(recipe, catalog))


def write_info(recipe: QuantizeRecipe, models_dir: Path, info: Mapping[str, Any]) -> Path:
    path = models_dir / recipe.name / QUANTIZED_INFO
    path.write_text(json.dumps({"recipe": recipe.to_dict(), **info}, indent=1) + "\n")
    return path


def read_info(name: str, models_dir: Path) -> dict[str, Any] | None:
    """quantized.json of an int8 model, None when it has not been made here."""
    path = models_dir / name / QUANTIZED_INFO
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else None

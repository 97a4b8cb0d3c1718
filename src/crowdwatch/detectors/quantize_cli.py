"""`crowdwatch models quantize PARENT --calibration-data FOLDER`: make an int8 model of a catalog
detector (see quantized.py for why it is made here rather than downloaded)."""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crowdwatch.detectors.catalog import CATALOG, fetch
from crowdwatch.detectors.quantized import (
    QuantizeRecipe,
    quantized_path,
    recipe_for,
    write_info,
)
from crowdwatch.evaluation.labeled import LabeledItem, open_folder, parse_ranges


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "quantize",
        parents=[common],
        help="make an int8 copy of a catalog detector, calibrated on labeled frames",
        description="Static int8 quantisation (QDQ, per-channel) calibrated on frames of a labeled "
        "folder. Writes <models-dir>/<int8 name>/model.onnx and quantized.json.",
    )
    p.add_argument("parent", metavar="MODEL", help="the fp32 catalog model (or the int8 name)")
    p.add_argument(
        "--calibration-data", type=Path, required=True, help="a labeled folder (index.json + images)"
    )
    p.add_argument("--frames", default=None, help="calibration frame ranges (default: the recipe's)")
    p.add_argument(
        "--limit", type=int, default=None, help="frames used, spread evenly (default: the recipe's)"
    )


@dataclass(frozen=True, slots=True)
class QuantizeResult:
    recipe: QuantizeRecipe
    path: Path
    frames: int
    seconds: float


def spread(items: list[LabeledItem], limit: int) -> list[LabeledItem]:
    """`limit` items evenly spaced over `items` (all when fewer): consecutive video frames are
    near-duplicates, so spreading covers more of the scene's variation."""
    if limit <= 0 or len(items) <= limit:
        return items
    idx = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[i] for i in idx]


def make_int8(
    name: str,
    models_dir: Path,
    calibration_data: Path,
    *,
    frames: str | None = None,
    limit: int | None = None,
) -> QuantizeResult:
    """Fetch the parent (idempotent), calibrate and quantise it, write the int8 model atomically
    (a half-written file is never loaded) and its quantized.json."""
    from crowdwatch.detectors.quantize import quantize_detector  # onnxruntime only when used

    recipe = recipe_for(name)
    parent = fetch(recipe.parent, models_dir, catalog=CATALOG)
    spec = frames if frames is not None else recipe.frames
    folder = open_folder(calibration_data)
    items = spread(folder.select(parse_ranges(spec)), limit if limit is not None else recipe.limit)
    if not items:
        raise ValueError(f"no calibration frames in {calibration_data} for frames {spec}")
    target = quantized_path(recipe.name, models_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part")
    start = time.perf_counter()
    try:
        quantize_detector(parent, tmp, (it.load_image() for it in items))
        tmp.chmod(0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    write_info(
        recipe,
        models_dir,
        {
            "parent_path": str(parent),
            "calibration_data": str(calibration_data.resolve()),
            "frames": spec,
            "calibration_images": [it.name for it in items],
            "seconds": round(seconds, 1),
        },
    )
    return QuantizeResult(recipe, target, len(items), seconds)

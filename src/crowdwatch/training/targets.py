"""Density targets for training a counting network: head points -> a map at the network's output
resolution whose sum is the number of heads. Pure numpy.

Each head becomes a small Gaussian over the map's cells, normalised over the cells it reaches,
so that the map sums to exactly the number of heads however close to the border they are.
With a region of interest (Mall's `roi_mask.png`), only the heads inside it are placed, and the
loss weighs each cell by the fraction of its pixels inside the region, which is how the
evaluation integrates a predicted map over the region (`DensityMap.integrate_mask`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from crowdwatch.core.density import DensityMap
from crowdwatch.evaluation.labeled import points_in_mask

FloatArray = npt.NDArray[np.float32]


def map_shape(image_shape: tuple[int, int], stride: int) -> tuple[int, int]:
    """CSRNet's output size for an image (three 2x2 floor-mode max-pools: floor(side / 8))."""
    h, w = image_shape
    return h // stride, w // stride


def density_target(
    points: npt.NDArray[np.float64],
    image_shape: tuple[int, int],
    *,
    stride: int = 8,
    sigma_cells: float = 1.5,
    weights: FloatArray | None = None,
) -> FloatArray:
    """(h, w) map summing to len(points). `points` are (N, 2) 0-based pixel coordinates (x, y);
    cell (i, j) covers pixels [j*stride, (j+1)*stride) x [i*stride, (i+1)*stride), so a point's
    position in cell units is (x + 0.5) / stride - 0.5 from the first cell's centre. Heads in
    the pixels the network drops (the last side mod stride) are pulled onto the last cell.

    With per-cell `weights` (a ROI's coverage), each head's kernel is normalised so that its
    *weighted* sum is one instead: `(map * weights).sum() == len(points)`, the way the
    evaluation integrates a map over the ROI, even for heads whose spread crosses its edge."""
    if sigma_cells <= 0:
        raise ValueError(f"sigma_cells must be positive, got {sigma_cells}")
    h, w = map_shape(image_shape, stride)
    if h == 0 or w == 0:
        raise ValueError(f"image {image_shape} is smaller than one {stride}-pixel cell")
    target = np.zeros((h, w), dtype=np.float64)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    radius = int(np.ceil(3.0 * sigma_cells))
    offsets = np.arange(-radius, radius + 1)
    for x, y in pts:
        u = float(np.clip((x + 0.5) / stride - 0.5, 0.0, w - 1))
        v = float(np.clip((y + 0.5) / stride - 0.5, 0.0, h - 1))
        cols = round(u) + offsets
        rows = round(v) + offsets
        cols = cols[(cols >= 0) & (cols < w)]
        rows = rows[(rows >= 0) & (rows < h)]
        gx = np.exp(-((cols - u) ** 2) / (2.0 * sigma_cells**2))
        gy = np.exp(-((rows - v) ** 2) / (2.0 * sigma_cells**2))
        kernel = np.outer(gy, gx)
        norm = kernel.sum()
        if weights is not None:
            weighted = float((kernel * weights[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]).sum())
            norm = weighted if weighted > 1e-6 * norm else norm  # a head on a cell barely in the ROI
        target[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] += kernel / norm
    return target.astype(np.float32)


def resized_shape(image_shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """The size the network sees a picture at when it is resized by `scale` (as the estimator
    and the trunk features resize it: rounded to whole pixels)."""
    h, w = image_shape
    return (h, w) if scale == 1.0 else (round(h * scale), round(w * scale))


def cell_weights(
    roi: npt.NDArray[np.bool_] | None, image_shape: tuple[int, int], stride: int = 8, scale: float = 1.0
) -> FloatArray:
    """Per-cell loss weights: the fraction of each cell inside `roi` (all ones without one), with
    cells laid over the original picture as the runtime's `DensityMap` lays them."""
    h, w = image_shape
    nh, nw = resized_shape(image_shape, scale)
    shape = map_shape((nh, nw), stride)
    if roi is None:
        return np.ones(shape, dtype=np.float32)
    empty = DensityMap(np.zeros(shape, np.float32), (stride * w / nw, stride * h / nh), image_shape)
    return empty.mask_coverage(roi)


@dataclass(frozen=True, slots=True)
class Target:
    density: FloatArray
    """(h, w) people per cell, built from the heads inside the ROI."""
    weights: FloatArray
    """(h, w) share of each cell inside the ROI (ones without one)."""
    count: int
    """Heads inside the ROI: what the evaluation compares `(predicted * weights).sum()` with."""


def make_target(
    points: npt.NDArray[np.float64],
    image_shape: tuple[int, int],
    roi: npt.NDArray[np.bool_] | None = None,
    *,
    stride: int = 8,
    sigma_cells: float = 1.5,
    scale: float = 1.0,
) -> Target:
    """The target of a picture of `image_shape` (points and ROI in its pixels) for a network that
    sees it resized by `scale`: the map is on the resized picture's grid."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if roi is not None:
        if roi.shape != tuple(image_shape):
            raise ValueError(f"ROI mask {roi.shape} differs from the image {image_shape}")
        pts = pts[points_in_mask(pts, roi)]
    h, w = image_shape
    nh, nw = resized_shape(image_shape, scale)
    pts = (pts + 0.5) * np.array([nw / w, nh / h]) - 0.5  # pixel centres map to pixel centres
    weights = cell_weights(roi, image_shape, stride, scale)
    density = density_target(
        pts, (nh, nw), stride=stride, sigma_cells=sigma_cells, weights=None if roi is None else weights
    )
    return Target(density, weights, len(pts))

"""Crowd density maps and their per-camera linear calibration. Pure: numpy only, no I/O.

A density map comes from a counting network (CSRNet): a small grid whose cells hold expected
people, so the sum over a zone is the zone's count. Cell (i, j) covers the image rectangle
x in [j*sx, (j+1)*sx), y in [i*sy, (i+1)*sy), where (sx, sy) is `scale`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from crowdwatch.core.geometry import as_points, points_in_polygon

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True, eq=False)
class DensityMap:
    values: FloatArray
    """(h, w) expected people per cell."""
    scale: tuple[float, float]
    """(sx, sy): image pixels per map cell along x and y."""
    image_shape: tuple[int, int]
    """(height, width) of the image the map was computed from."""

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float32)
        if values.ndim != 2:
            raise ValueError(f"a density map is 2-D, got shape {values.shape}")
        sx, sy = (float(s) for s in self.scale)
        if not (sx > 0 and sy > 0):
            raise ValueError(f"scale must be positive, got {self.scale}")
        ih, iw = (int(v) for v in self.image_shape)
        if ih <= 0 or iw <= 0:
            raise ValueError(f"image_shape must be positive, got {self.image_shape}")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "scale", (sx, sy))
        object.__setattr__(self, "image_shape", (ih, iw))

    @property
    def shape(self) -> tuple[int, int]:
        h, w = self.values.shape
        return int(h), int(w)

    def total(self) -> float:
        return float(self.values.sum(dtype=np.float64))

    def cell_centres(self) -> npt.NDArray[np.float64]:
        """(h*w, 2) image coordinates (x, y) of the cell centres, row-major like `values`."""
        h, w = self.shape
        sx, sy = self.scale
        ys, xs = np.mgrid[0:h, 0:w]
        return np.column_stack([(xs.ravel() + 0.5) * sx, (ys.ravel() + 0.5) * sy])

    def polygon_mask(self, polygon: npt.ArrayLike) -> BoolArray:
        """Cells whose centre is inside `polygon` (image pixels, (N, 2)); a cell centre on the edge
        counts as inside, as for people's feet in `core.zones`."""
        poly = as_points(polygon)
        if len(poly) < 3:
            raise ValueError(f"a zone polygon needs at least 3 vertices, got {len(poly)}")
        h, w = self.shape
        sx, sy = self.scale
        # Test only the cells inside the polygon's bounding box: zones are usually small
        # compared with the frame, and the point test is O(cells x vertices).
        x0, y0 = poly.min(axis=0)
        x1, y1 = poly.max(axis=0)
        j0, j1 = max(int(np.floor(x0 / sx - 0.5)), 0), min(int(np.ceil(x1 / sx - 0.5)) + 1, w)
        i0, i1 = max(int(np.floor(y0 / sy - 0.5)), 0), min(int(np.ceil(y1 / sy - 0.5)) + 1, h)
        mask = np.zeros((h, w), dtype=bool)
        if j0 >= j1 or i0 >= i1:
            return mask
        ys, xs = np.mgrid[i0:i1, j0:j1]
        centres = np.column_stack([(xs.ravel() + 0.5) * sx, (ys.ravel() + 0.5) * sy])
        mask[i0:i1, j0:j1] = points_in_polygon(centres, poly).reshape(i1 - i0, j1 - j0)
        return mask

    def mask_coverage(self, mask: npt.ArrayLike) -> FloatArray:
        """Fraction (0..1) of each cell covered by a boolean image-size `mask`, by area. Image
        pixels that no cell covers (the network drops the last H mod 8 rows) are ignored."""
        m = np.asarray(mask)
        if m.shape != self.image_shape:
            raise ValueError(f"mask shape {m.shape} differs from the image shape {self.image_shape}")
        ih, iw = self.image_shape
        h, w = self.shape
        sx, sy = self.scale
        # Summed-area table: any cell's pixel count in O(1), also for non-integer scales.
        sat = np.zeros((ih + 1, iw + 1), dtype=np.int64)
        sat[1:, 1:] = np.cumsum(np.cumsum(m.astype(bool), axis=0, dtype=np.int64), axis=1)
        rows = np.clip(np.rint(np.arange(h + 1) * sy).astype(np.int64), 0, ih)
        cols = np.clip(np.rint(np.arange(w + 1) * sx).astype(np.int64), 0, iw)
        r0, r1 = rows[:-1, None], rows[1:, None]
        c0, c1 = cols[None, :-1], cols[None, 1:]
        inside = sat[r1, c1] - sat[r0, c1] - sat[r1, c0] + sat[r0, c0]
        area = (r1 - r0) * (c1 - c0)
        with np.errstate(divide="ignore", invalid="ignore"):
            cover = np.where(area > 0, inside / np.maximum(area, 1), 0.0)
        return cover.astype(np.float32)

    def integrate_polygon(self, polygon: npt.ArrayLike) -> float:
        """Expected people inside `polygon` (image pixels). Cells count whole or not at all (by
        their centre): a zone edge is accurate to half a cell."""
        return float(self.values[self.polygon_mask(polygon)].sum(dtype=np.float64))

    def integrate_mask(self, mask: npt.ArrayLike) -> float:
        """Expected people inside a boolean image-size `mask`, partial cells weighted by the
        covered fraction of their area."""
        return float((self.values.astype(np.float64) * self.mask_coverage(mask)).sum())

    def integrate(self, zone: npt.ArrayLike) -> float:
        """`integrate_mask` for a boolean array of the image's shape, else `integrate_polygon`."""
        arr = np.asarray(zone)
        if arr.dtype == np.bool_:  # a polygon is never boolean; a wrong-size mask fails clearly
            return self.integrate_mask(arr)
        return self.integrate_polygon(arr)


@dataclass(frozen=True, slots=True)
class DensityCalibration:
    """count = a * raw + b, fitted on labeled frames (per camera, or one global line).

    `b` is the background the network integrates over the fitted region (CSRNet sees people in
    textures on sparse scenes). `apply` takes the fraction of that region a zone covers so a
    small zone is not charged the whole background."""

    a: float = 1.0
    b: float = 0.0
    camera_id: str | None = None
    """None for a global calibration."""
    n: int = 0
    """Frames it was fitted on (0 = identity, not fitted)."""
    residual_std: float = 0.0
    """Standard deviation of true - fitted on the fitting frames, in people."""

    def __post_init__(self) -> None:
        if not (np.isfinite(self.a) and np.isfinite(self.b)):
            raise ValueError(f"calibration coefficients must be finite, got a={self.a} b={self.b}")
        if self.a <= 0:
            raise ValueError(f"slope a must be positive (more density = more people), got {self.a}")

    def apply(self, raw: float, area_fraction: float = 1.0) -> float:
        """Calibrated count, never negative."""
        return max(0.0, self.a * raw + self.b * area_fraction)

    def apply_many(self, raw: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return np.maximum(0.0, self.a * np.asarray(raw, dtype=np.float64) + self.b)

    @classmethod
    def fit(
        cls,
        raw_counts: Sequence[float] | npt.ArrayLike,
        true_counts: Sequence[float] | npt.ArrayLike,
        *,
        robust: bool = False,
        camera_id: str | None = None,
        huber_k: float = 1.345,
        iterations: int = 50,
    ) -> DensityCalibration:
        """Least-squares line through (raw, true). `robust` down-weights outliers (Huber
        weights by iteratively reweighted least squares, scale from the MAD), for frames where
        the labels or the network are badly off."""
        x = np.asarray(raw_counts, dtype=np.float64).reshape(-1)
        y = np.asarray(true_counts, dtype=np.float64).reshape(-1)
        if len(x) != len(y):
            raise ValueError(f"{len(x)} raw counts but {len(y)} true counts")
        if len(x) < 2 or np.ptp(x) == 0:
            raise ValueError("need at least two frames with different raw counts to fit a line")
        design = np.column_stack([x, np.ones_like(x)])
        weights: npt.NDArray[np.float64] = np.ones_like(x)
        coef: npt.NDArray[np.float64] = np.zeros(2)
        for _ in range(iterations if robust else 1):
            sw = np.sqrt(weights)
            new, *_ = np.linalg.lstsq(design * sw[:, None], y * sw, rcond=None)
            converged = np.allclose(new, coef, rtol=1e-9, atol=1e-9)
            coef = np.asarray(new, dtype=np.float64)
            if not robust or converged:
                break
            resid = y - design @ coef
            scale = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
            if scale <= 0:
                break
            u = np.abs(resid) / (huber_k * scale)
            weights = np.asarray(np.where(u <= 1, 1.0, 1.0 / np.maximum(u, 1e-12)), dtype=np.float64)
        a, b = float(coef[0]), float(coef[1])
        resid = y - (a * x + b)
        return cls(a=a, b=b, camera_id=camera_id, n=len(x), residual_std=float(np.std(resid)))

    def to_dict(self) -> dict[str, float | int | str | None]:
        return {
            "a": self.a,
            "b": self.b,
            "camera_id": self.camera_id,
            "n": self.n,
            "residual_std": self.residual_std,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> DensityCalibration:
        unknown = set(data) - {"a", "b", "camera_id", "n", "residual_std"}
        if unknown:
            raise ValueError(f"unknown calibration fields {sorted(unknown)}")
        camera = data.get("camera_id")
        return cls(
            a=_num(data.get("a", 1.0), "a"),
            b=_num(data.get("b", 0.0), "b"),
            camera_id=None if camera is None else str(camera),
            n=int(_num(data.get("n", 0), "n")),
            residual_std=_num(data.get("residual_std", 0.0), "residual_std"),
        )


def _num(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"calibration field {name} must be a number, got {value!r}")
    return float(value)

"""Zones on a camera image: who stands inside, and how big the zone is on the ground."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from crowdwatch.core.geometry import (
    as_points,
    clip_to_rect,
    fit_homography,
    points_in_polygon,
    polygon_area,
    project,
)
from crowdwatch.core.types import Detections


@dataclass(frozen=True, slots=True, eq=False)
class Zone:
    """A watched area in image pixels. `area_m2` is known only with a ground calibration."""

    zone_id: str
    polygon: npt.NDArray[np.float64]
    area_m2: float | None = None

    def __post_init__(self) -> None:
        poly = np.asarray(self.polygon, dtype=np.float64).reshape(-1, 2)
        if len(poly) < 3:
            raise ValueError(f"zone {self.zone_id}: a polygon needs at least 3 points")
        object.__setattr__(self, "polygon", poly)

    def contains(self, points: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        return points_in_polygon(points, self.polygon)

    def count(self, detections: Detections) -> int:
        """People whose feet (bottom-centre of the box) are inside the zone."""
        if len(detections) == 0:
            return 0
        return int(np.count_nonzero(self.contains(detections.feet())))

    def density(self, count: float) -> float | None:
        return count / self.area_m2 if self.area_m2 else None

    def visible_share(self, frame_size: tuple[int, int]) -> float:
        """The share of a (width, height) picture that the zone covers, counting only its part
        inside the picture (1 for a degenerate picture)."""
        width, height = frame_size
        if width <= 0 or height <= 0:
            return 1.0
        visible = clip_to_rect(self.polygon, width, height)
        return min(polygon_area(visible) / (width * height), 1.0) if len(visible) >= 3 else 0.0

    def outside(self, frame_size: tuple[int, int]) -> bool:
        """Whether part of the zone lies outside a (width, height) picture."""
        width, height = frame_size
        p = self.polygon
        return bool(np.any(p < 0) or np.any(p[:, 0] > width) or np.any(p[:, 1] > height))


@dataclass(frozen=True, slots=True, eq=False)
class GroundCalibration:
    """Image -> ground-plane (metres) mapping of one camera."""

    homography: npt.NDArray[np.float64]

    @classmethod
    def fit(cls, image_points: npt.ArrayLike, ground_points: npt.ArrayLike) -> GroundCalibration:
        return cls(fit_homography(image_points, ground_points))

    def to_ground(self, points: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return project(self.homography, points)

    def area_m2(self, polygon: npt.ArrayLike) -> float:
        pts = as_points(polygon)
        w = np.c_[pts, np.ones(len(pts))] @ self.homography[2]
        if np.any(w < 1e-12):
            # Part of the outline (or all of it) maps past the horizon, where the calibration
            # points are not (fit_homography puts them at w > 0): the projected "area" would
            # be finite but meaningless, and every density of the zone silently wrong.
            raise ValueError("zone polygon reaches past the horizon of the ground calibration")
        return polygon_area(self.to_ground(pts))


def make_zone(zone_id: str, polygon: npt.ArrayLike, calibration: GroundCalibration | None = None) -> Zone:
    poly = np.asarray(polygon, dtype=np.float64)
    area = calibration.area_m2(poly) if calibration is not None else None
    return Zone(zone_id=zone_id, polygon=poly, area_m2=area)

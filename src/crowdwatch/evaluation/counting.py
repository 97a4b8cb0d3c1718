"""Run a counter over a labeled folder: one `ImageResult` per picture, comparable across
methods, and a CSV form so that a slow run's raw counts can be rescored (e.g. with a
calibration) without running the network again."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import numpy.typing as npt

from crowdwatch.core.auto_mode import AutoParams, AutoSwitch, Mode
from crowdwatch.core.density import DensityCalibration
from crowdwatch.core.types import Detections
from crowdwatch.detectors.base import Detector
from crowdwatch.detectors.density import DensityEstimator
from crowdwatch.evaluation.labeled import LabeledFolder, LabeledItem, points_in_mask

Counter = Callable[[npt.NDArray[np.uint8], "npt.NDArray[np.bool_] | None"], float]
"""(BGR image, ROI mask or None) -> raw count."""


@dataclass(frozen=True, slots=True)
class ImageResult:
    name: str
    frame: int | None
    true: int
    raw: float
    """The method's own count, before any calibration."""
    ms: float
    """Time of the counting call alone (no image decoding)."""


def density_counter(estimator: DensityEstimator) -> Counter:
    def count(image: npt.NDArray[np.uint8], roi: npt.NDArray[np.bool_] | None) -> float:
        density = estimator.estimate(image)
        return density.total() if roi is None else density.integrate_mask(roi)

    return count


def head_points(detections: Detections) -> npt.NDArray[np.float64]:
    """An approximate head position per box (top centre, a tenth of the height down): the
    datasets label heads, and their ROI masks are drawn around heads, not feet."""
    xyxy = detections.xyxy.astype(np.float64)
    return np.column_stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, xyxy[:, 1] + 0.1 * (xyxy[:, 3] - xyxy[:, 1])])


def detector_counter(detector: Detector) -> Counter:
    def count(image: npt.NDArray[np.uint8], roi: npt.NDArray[np.bool_] | None) -> float:
        detections = detector.detect(image)
        if roi is None:
            return float(len(detections))
        return float(np.count_nonzero(points_in_mask(head_points(detections), roi)))

    return count


class AutoCounter:
    """Counts as an `auto` zone does: boxes first, the density map (calibrated, as the runtime
    does) once the boxes in the ROI reach the switch's thresholds. With `fps`, successive calls
    are consecutive frames through one switch (hysteresis, dwell); without, each picture
    decides alone from a fresh switch (independent pictures). `modes` records each call's mode."""

    def __init__(
        self,
        detector: Detector,
        estimator: DensityEstimator,
        params: AutoParams,
        *,
        calibration: DensityCalibration | None = None,
        fps: float | None = None,
    ) -> None:
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self._detector = detector
        self._estimator = estimator
        self._params = params
        self._calibration = calibration
        self._fps = fps
        self._switch = AutoSwitch(params)
        self.modes: list[Mode] = []

    def __call__(self, image: npt.NDArray[np.uint8], roi: npt.NDArray[np.bool_] | None) -> float:
        if self._fps is None:
            switch, now = AutoSwitch(self._params), 0.0
        else:
            switch, now = self._switch, len(self.modes) / self._fps
        detections = self._detector.detect(image)
        if roi is not None:
            detections = detections[points_in_mask(head_points(detections), roi)]
        mode = switch.before_density(now, detections)
        probe = mode == "detector" and switch.probe_due(now)
        if mode == "detector" and not probe:
            self.modes.append(mode)
            return float(len(detections))
        density = self._estimator.estimate(image)
        raw = density.total() if roi is None else density.integrate_mask(roi)
        count = self._calibration.apply(raw) if self._calibration is not None else max(raw, 0.0)
        if probe:
            mode = switch.after_probe(now, count, len(detections))
        self.modes.append(mode)
        if mode == "detector":
            return float(len(detections))
        switch.after_density(now, count)
        return count


def auto_counter(
    detector: Detector,
    estimator: DensityEstimator,
    params: AutoParams,
    *,
    calibration: DensityCalibration | None = None,
    fps: float | None = None,
) -> AutoCounter:
    return AutoCounter(detector, estimator, params, calibration=calibration, fps=fps)


def run_counter(
    folder: LabeledFolder, items: Iterable[LabeledItem], counter: Counter
) -> Iterator[ImageResult]:
    for item in items:
        image = item.load_image()
        if folder.roi is not None and folder.roi.shape != image.shape[:2]:
            raise ValueError(f"{item.image_path}: size {image.shape[:2]} differs from the ROI mask's")
        start = time.perf_counter()
        raw = counter(image, folder.roi)
        ms = (time.perf_counter() - start) * 1000.0
        yield ImageResult(item.name, item.frame_number, folder.true_count(item), raw, ms)


_COLUMNS = [f.name for f in fields(ImageResult)]


def write_results_csv(path: Path, results: Iterable[ImageResult], predicted: Iterable[float]) -> None:
    """One row per image: the ImageResult columns, then `predicted` (after calibration) and
    `error` (predicted - true)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*_COLUMNS, "predicted", "error"])
        for r, p in zip(results, predicted, strict=True):
            frame = "" if r.frame is None else r.frame
            writer.writerow(
                [r.name, frame, r.true, f"{r.raw:.4f}", f"{r.ms:.1f}", f"{p:.4f}", f"{p - r.true:.4f}"]
            )


def read_results_csv(path: Path) -> list[ImageResult]:
    with path.open(newline="") as f:
        return [
            ImageResult(
                name=row["name"],
                frame=int(row["frame"]) if row["frame"] else None,
                true=int(row["true"]),
                raw=float(row["raw"]),
                ms=float(row["ms"]),
            )
            for row in csv.DictReader(f)
        ]

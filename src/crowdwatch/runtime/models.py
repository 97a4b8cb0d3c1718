"""The models of one worker process, shared by its cameras, each behind its own lock: on a CPU
box two cameras inferring at once only thrash the same cores, and some backends are not
thread-safe. Built lazily: a model nobody's zones need is never loaded."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt

from crowdwatch.config.counting import CountingConfig
from crowdwatch.config.detector import DetectorConfig
from crowdwatch.core.density import DensityMap
from crowdwatch.core.types import Detections
from crowdwatch.detectors.base import Detector
from crowdwatch.detectors.density import DensityEstimator
from crowdwatch.detectors.tiled import Region, TiledDetector

Image = npt.NDArray[np.uint8]


def build_density_estimator(counting: CountingConfig, models_dir: Path | None) -> DensityEstimator:
    from crowdwatch.detectors.catalog import default_models_dir, resolve
    from crowdwatch.detectors.density import CsrnetOnnxEstimator

    cfg = counting.density
    resolved = resolve(cfg.model, models_dir or default_models_dir(), "density")
    name = resolved.entry.name if resolved.entry is not None else Path(cfg.model).stem
    return CsrnetOnnxEstimator(resolved.path, name=name, threads=cfg.threads, max_side=cfg.max_side)


class ModelSet:
    def __init__(
        self,
        detector_config: DetectorConfig,
        counting: CountingConfig,
        models_dir: Path | None,
        *,
        detector: Detector | None = None,
        density: DensityEstimator | None = None,
    ) -> None:
        self._detector_config = detector_config
        self._counting = counting
        self._models_dir = models_dir
        self._detector = detector
        self._density = density
        self._detector_lock = threading.Lock()
        self._density_lock = threading.Lock()

    def load(self, *, detector: bool, density: bool) -> None:
        """Load what the configured zones need up front, so a missing model fails at start."""
        if detector and self._detector is None:
            from crowdwatch.detectors.registry import build_detector

            self._detector = build_detector(self._detector_config, self._models_dir)
        if density and self._density is None:
            self._density = build_density_estimator(self._counting, self._models_dir)

    @property
    def detector_name(self) -> str:
        return self._detector.name if self._detector is not None else ""

    @property
    def density_name(self) -> str:
        return self._density.name if self._density is not None else ""

    def detect(self, image: Image) -> Detections:
        detector = self._require_detector()
        with self._detector_lock:
            return detector.detect(image)

    def detect_tiled(self, image: Image, region: Region) -> Detections:
        tiles = self._counting.tiles
        tiled = TiledDetector(
            self._require_detector(),
            tile=tiles.size,
            overlap=tiles.overlap,
            upscale=tiles.upscale,
            iou=self._detector_config.iou,
        )
        with self._detector_lock:
            return tiled.detect(image, region)

    def density(self, image: Image) -> DensityMap:
        if self._density is None:
            raise RuntimeError("no density model loaded (a zone counts by density)")
        with self._density_lock:
            return self._density.estimate(image)

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()
        if self._density is not None:
            self._density.close()

    def _require_detector(self) -> Detector:
        if self._detector is None:
            raise RuntimeError("no detector loaded")
        return self._detector

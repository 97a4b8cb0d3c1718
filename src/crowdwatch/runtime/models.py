"""The models of one worker process, shared by its cameras, each behind its own lock: on a CPU
box two cameras inferring at once only thrash the same cores, and some backends are not
thread-safe. Built lazily: a model nobody's zones need is never loaded."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt

from crowdwatch.config.counting import CountingConfig, DensityConfig
from crowdwatch.config.detector import DetectorConfig, UltralyticsDetectorConfig
from crowdwatch.core.density import DensityMap
from crowdwatch.core.types import Detections
from crowdwatch.detectors.base import Detector
from crowdwatch.detectors.batching import BatchDetector, BatchObserver, MicroBatcher
from crowdwatch.detectors.density import DensityEstimator
from crowdwatch.detectors.tiled import Region, TiledDetector

Image = npt.NDArray[np.uint8]


def build_density_estimator(counting: CountingConfig, models_dir: Path | None) -> DensityEstimator:
    """The configured density model: a catalog name, a trained model (`crowdwatch models train`)
    or an ONNX path. Raises ModelNotFetchedError naming the fetch or train command to run."""
    from crowdwatch.detectors.catalog import default_models_dir
    from crowdwatch.detectors.trained import resolve_density_model

    cfg = counting.density
    resolved = resolve_density_model(cfg.model, models_dir or default_models_dir())
    return open_density_model(resolved.path, resolved.name, cfg)


def density_device(requested: str) -> str:
    """`auto` -> cuda:0 when PyTorch is installed and sees a GPU, else cpu."""
    from crowdwatch.detectors.csrnet_torch import cuda_available

    if requested != "auto":
        return requested
    return "cuda:0" if cuda_available() else "cpu"


def open_density_model(path: Path, name: str, cfg: DensityConfig) -> DensityEstimator:
    """ONNX Runtime on CPU; PyTorch on a CUDA device (same network, same weights)."""
    device = density_device(cfg.device)
    if device == "cpu":
        from crowdwatch.detectors.density import CsrnetOnnxEstimator

        return CsrnetOnnxEstimator(path, name=name, threads=cfg.threads, max_side=cfg.max_side)
    from crowdwatch.detectors.csrnet_torch import CsrnetTorchEstimator

    return CsrnetTorchEstimator.from_onnx(
        path, device=device, half=cfg.half, name=name, max_side=cfg.max_side
    )


class ModelSet:
    def __init__(
        self,
        detector_config: DetectorConfig,
        counting: CountingConfig,
        models_dir: Path | None,
        *,
        detector: Detector | None = None,
        density: DensityEstimator | None = None,
        on_batch: BatchObserver | None = None,
    ) -> None:
        self._on_batch = on_batch
        self._detector_config = detector_config
        self._counting = counting
        self._models_dir = models_dir
        self._detector = self._batched(detector) if detector is not None else None
        self._density = density
        self._detector_lock = threading.Lock()
        self._density_lock = threading.Lock()

    def load(self, *, detector: bool, density: bool) -> None:
        """Load what the configured zones need up front, so a missing model fails at start."""
        if detector and self._detector is None:
            from crowdwatch.detectors.registry import build_detector

            self._detector = self._batched(build_detector(self._detector_config, self._models_dir))
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
        if isinstance(detector, MicroBatcher):
            return detector.detect(image)  # it queues: callers must not hold the lock meanwhile
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
        if isinstance(tiled.detector, MicroBatcher):
            return tiled.detect(image, region)  # it queues the tiles: no lock while waiting
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

    def _batched(self, detector: Detector) -> Detector:
        cfg = self._detector_config
        if not isinstance(cfg, UltralyticsDetectorConfig) or cfg.batch_size == 1:
            return detector
        if not isinstance(detector, BatchDetector):
            raise TypeError(f"detector {detector.name} cannot run batches (batch_size {cfg.batch_size})")
        return MicroBatcher(
            detector, max_batch=cfg.batch_size, max_wait_s=cfg.batch_wait_ms / 1000, on_batch=self._on_batch
        )

    def _require_detector(self) -> Detector:
        if self._detector is None:
            raise RuntimeError("no detector loaded")
        return self._detector

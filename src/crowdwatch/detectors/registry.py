"""Config `type` -> detector builder, spelled out (no plugin discovery)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from crowdwatch.config.detector import DetectorConfig, OnnxDetectorConfig, UltralyticsDetectorConfig
from crowdwatch.detectors.base import Detector
from crowdwatch.detectors.catalog import default_models_dir
from crowdwatch.detectors.quantized import resolve_detector_model


def build_onnx(config: OnnxDetectorConfig, models_dir: Path) -> Detector:
    # onnxruntime loads only when used.
    model = resolve_detector_model(config.model, models_dir, "onnx")
    if model.entry is not None and model.entry.architecture == "ssd":
        from crowdwatch.detectors.ssd import SsdOnnxDetector

        return SsdOnnxDetector(config, model)
    from crowdwatch.detectors.onnx import OnnxDetector

    return OnnxDetector(config, model)


def build_ultralytics(config: UltralyticsDetectorConfig, models_dir: Path) -> Detector:
    from crowdwatch.detectors.ultralytics import UltralyticsDetector

    return UltralyticsDetector(config, resolve_detector_model(config.model, models_dir, "pt"))


BUILDERS: Mapping[str, Callable[[Any, Path], Detector]] = MappingProxyType(
    {"onnx": build_onnx, "ultralytics": build_ultralytics}
)


def build_detector(config: DetectorConfig, models_dir: Path | None = None) -> Detector:
    """The detector for `config`, loading its model from `models_dir` (default:
    `default_models_dir()`). Raises ModelNotFetchedError with the fetch (or quantize) command to
    run."""
    return BUILDERS[config.type](config, models_dir if models_dir is not None else default_models_dir())

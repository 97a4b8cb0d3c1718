"""Person detection with Ultralytics YOLO (PyTorch). Ultralytics is an optional extra, imported
only when this detector is built: its import writes a settings file and checks the network."""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from crowdwatch.config.detector import UltralyticsDetectorConfig
from crowdwatch.core.types import Detections
from crowdwatch.detectors.base import (
    PERSON_CLASS_ID,
    DetectorClosedError,
    DetectorUnavailableError,
    check_image,
)
from crowdwatch.detectors.catalog import ResolvedModel
from crowdwatch.detectors.classes import person_class_ids


def _detections(boxes: Any) -> Detections:
    xyxy = boxes.xyxy.cpu().numpy()
    conf = boxes.conf.cpu().numpy()
    return Detections(xyxy, conf, np.full(len(conf), PERSON_CLASS_ID, dtype=np.int32))


def choose_device(requested: str, cuda_available: bool) -> str:
    if requested == "auto":
        return "cuda:0" if cuda_available else "cpu"
    if requested.startswith("cuda") and not cuda_available:
        raise DetectorUnavailableError(f"device '{requested}' was asked for but PyTorch sees no CUDA GPU")
    return requested


def _import_yolo() -> Any:
    try:
        # import_module, not `from ultralytics import YOLO`: ultralytics ships no type hints
        # for its lazy top-level exports, and it is optional.
        module = importlib.import_module("ultralytics")
    except ImportError as exc:
        raise DetectorUnavailableError(
            "the ultralytics detector needs the optional extra: install `crowdwatch[ultralytics]`, "
            "or use detector type: onnx"
        ) from exc
    return module.YOLO


def half_precision_args() -> dict[str, Any]:
    """Ultralytics 8.4 replaced `half=True` by `quantize=16` (and warns on every call given the
    old one); 8.3 knows only `half`."""
    defaults = importlib.import_module("ultralytics.cfg").DEFAULT_CFG_DICT
    return {"quantize": 16} if "quantize" in defaults else {"half": True}


class UltralyticsDetector:
    def __init__(self, config: UltralyticsDetectorConfig, model: ResolvedModel) -> None:
        if model.is_local:
            # Before the import: Ultralytics decides at import time whether it is online, and
            # offline it skips update checks and asset downloads that would stall here.
            os.environ.setdefault("YOLO_OFFLINE", "1")
        yolo_cls = _import_yolo()
        import torch  # present whenever ultralytics is

        self.name = model.name
        self._device = choose_device(config.device, torch.cuda.is_available())
        self._half = config.half and self._device.startswith("cuda")
        self._args: dict[str, Any] = {
            "conf": config.confidence,
            "iou": config.iou,
            "imgsz": config.imgsz,
            "max_det": config.max_detections,
            "device": self._device,
            "verbose": False,
        }
        if self._half:  # only on CUDA; Ultralytics warns about the argument otherwise
            self._args.update(half_precision_args())
        try:
            self._model: Any = yolo_cls(str(model.path), task="detect")
        except OSError as exc:  # ConnectionError when a stock name cannot be downloaded
            if model.is_local:
                raise
            raise DetectorUnavailableError(
                f"Ultralytics could not download '{model.path}' (no internet?): use a catalog model "
                "instead (`crowdwatch models fetch yolov8s-person`) or a path to a local file"
            ) from exc
        self.person_classes = person_class_ids(dict(self._model.names), model.entry)
        # Keep only person classes before NMS, and suppress across them: 'Normal' and 'Fall'
        # boxes on one person are one person.
        self._args["classes"] = sorted(self.person_classes)
        self._args["agnostic_nms"] = True

    @property
    def device(self) -> str:
        return self._device

    def detect(self, image: npt.NDArray[np.uint8]) -> Detections:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[npt.NDArray[np.uint8]]) -> list[Detections]:
        """One forward pass over all `images` (sizes may differ: each is letterboxed)."""
        if self._model is None:
            raise DetectorClosedError(f"detector {self.name} is closed")
        for image in images:
            check_image(image)
        # A list is one batch to Ultralytics; numpy input is taken as BGR.
        results = self._model.predict(list(images), **self._args)
        return [_detections(r.boxes) for r in results]

    def close(self) -> None:
        self._model = None
        if self._device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

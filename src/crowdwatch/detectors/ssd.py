"""Person detection with an SSD network built by ssd_onnx.py, on ONNX Runtime: TF's resize and
pixel layout in front, anchors, box decoding, scores and NMS behind (ssd_head.py)."""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from crowdwatch.config.detector import OnnxDetectorConfig
from crowdwatch.core.types import Detections
from crowdwatch.detectors.base import DetectorClosedError, check_image
from crowdwatch.detectors.catalog import ResolvedModel
from crowdwatch.detectors.onnx import choose_providers, session_options
from crowdwatch.detectors.ssd_config import METADATA_KEY, SsdConfig, SsdConfigError
from crowdwatch.detectors.ssd_head import generate_anchors, postprocess
from crowdwatch.detectors.ssd_onnx import BOXES_NAME, INPUT_NAME, LOGITS_NAME
from crowdwatch.detectors.tf_resize import resize_bilinear

log = logging.getLogger(__name__)


class SsdOnnxDetector:
    def __init__(self, config: OnnxDetectorConfig, model: ResolvedModel) -> None:
        self.name = model.name
        self._conf = config.confidence
        self._max_det = config.max_detections
        self._session: ort.InferenceSession | None = ort.InferenceSession(
            str(model.path),
            sess_options=session_options(config.threads),
            providers=choose_providers(config.providers, ort.get_available_providers()),
        )
        meta = self._session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise SsdConfigError(
                f"{model.path} carries no SSD settings ({METADATA_KEY}): build it with "
                "`crowdwatch models fetch` from a TF Object Detection API graph"
            )
        self.config = SsdConfig.from_json(meta[METADATA_KEY])
        self.anchors = generate_anchors(self.config)
        # The graph's own NMS overlap unless the config sets one: the model was tuned with it.
        self.iou_threshold = config.iou if "iou" in config.model_fields_set else self.config.iou_threshold
        if "imgsz" in config.model_fields_set and config.imgsz != self.config.input_size[0]:
            log.warning(
                "%s has a fixed input of %s px; ignoring imgsz=%d",
                self.name,
                self.config.input_size,
                config.imgsz,
            )
        self.input_size: int = self.config.input_size[0]
        if model.entry is not None:
            self.person_classes = model.entry.person_classes
        else:
            self.person_classes = frozenset({0})  # TF OD API person detectors: class 1 = person

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers()) if self._session is not None else []

    def detect(self, image: npt.NDArray[np.uint8]) -> Detections:
        if self._session is None:
            raise DetectorClosedError(f"detector {self.name} is closed")
        check_image(image)
        c = self.config
        # Stretch to the input size (no letterbox: the model was trained on stretched images)
        # with TF's own bilinear sampling, then BGR -> RGB on the small picture (cheaper than
        # flipping the frame: a reversed view makes every gather strided).
        resized = resize_bilinear(
            image, c.input_size, align_corners=c.align_corners, half_pixel_centers=c.half_pixel_centers
        )
        blob = np.ascontiguousarray(resized[None, :, :, ::-1])
        encodings, logits = self._session.run([BOXES_NAME, LOGITS_NAME], {INPUT_NAME: blob})
        return postprocess(
            encodings[0],
            logits[0],
            self.anchors,
            c,
            person_classes=self.person_classes,
            conf_threshold=self._conf,
            iou_threshold=self.iou_threshold,
            max_det=self._max_det,
            orig_shape=(image.shape[0], image.shape[1]),
        )

    def close(self) -> None:
        self._session = None

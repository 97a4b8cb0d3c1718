"""Person detection with ONNX Runtime: YOLOv8-style exports without NMS inside."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from crowdwatch.config.detector import OnnxDetectorConfig
from crowdwatch.core.types import Detections
from crowdwatch.detectors.base import DetectorClosedError, check_image
from crowdwatch.detectors.catalog import ResolvedModel
from crowdwatch.detectors.classes import names_from_onnx_metadata, person_class_ids
from crowdwatch.detectors.letterbox import letterbox
from crowdwatch.detectors.yolo_head import postprocess

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def choose_providers(requested: Sequence[str], available: Sequence[str]) -> list[str]:
    """The configured providers (all must be available: a silent fallback to CPU would hide a
    broken GPU setup), else CUDA when this onnxruntime build has it, else CPU."""
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise ValueError(
                f"ONNX Runtime providers {missing} are not available here (available: {list(available)})"
            )
        return list(requested)
    return [CUDA, CPU] if CUDA in available else [CPU]


def session_options(threads: int) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads  # 0 = ONNX Runtime's default: one per physical core
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # A single-image YOLO graph is one chain of ops: parallel branches gain nothing and an
    # inter-op pool would only compete with the intra-op threads for the cores.
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle intra-op threads sleep instead of spinning: a worker shares its cores with video
    # decoding and other cameras, and on 2 busy cores spinning threads made inference ~1.6x slower
    # (420 ms vs 265 ms per frame measured here).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def fixed_input_size(shape: Sequence[object]) -> int | None:
    """The square input size of an NCHW input with fixed H and W, else None (dynamic axes)."""
    if len(shape) != 4:
        raise ValueError(f"expected an NCHW image input, got shape {list(shape)}")
    h, w = shape[2], shape[3]
    if not (isinstance(h, int) and isinstance(w, int)):
        return None
    if h != w:
        raise ValueError(f"only square model inputs are supported, got {h}x{w}")
    return h


class OnnxDetector:
    def __init__(self, config: OnnxDetectorConfig, model: ResolvedModel) -> None:
        self.name = model.name
        self._conf = config.confidence
        self._iou = config.iou
        self._max_det = config.max_detections
        self._session: ort.InferenceSession | None = ort.InferenceSession(
            str(model.path),
            sess_options=session_options(config.threads),
            providers=choose_providers(config.providers, ort.get_available_providers()),
        )
        inp = self._session.get_inputs()[0]
        self._input_name: str = inp.name
        self._output_name: str = self._session.get_outputs()[0].name
        self._fp16_input = inp.type == "tensor(float16)"
        fixed = fixed_input_size(inp.shape)
        if fixed is not None and "imgsz" in config.model_fields_set and config.imgsz != fixed:
            log.warning("%s has a fixed input of %d px; ignoring imgsz=%d", self.name, fixed, config.imgsz)
        self.input_size: int = fixed if fixed is not None else config.imgsz
        names = names_from_onnx_metadata(self._session.get_modelmeta().custom_metadata_map)
        self.person_classes = person_class_ids(names, model.entry)
        if names is not None:
            self._num_classes = len(names)
        elif model.entry is not None:
            self._num_classes = len(model.entry.class_names)
        else:  # unreachable: person_class_ids needs names or an entry
            raise ValueError(f"{model.path}: unknown number of classes")

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers()) if self._session is not None else []

    def detect(self, image: npt.NDArray[np.uint8]) -> Detections:
        if self._session is None:
            raise DetectorClosedError(f"detector {self.name} is closed")
        check_image(image)
        boxed = letterbox(image, self.input_size)
        # BGR HWC uint8 -> RGB NCHW scaled to 0..1, as the model was trained; C order because
        # astype would otherwise keep the transposed strides and ONNX Runtime copy them again.
        blob = boxed.image[None, :, :, ::-1].transpose(0, 3, 1, 2).astype(np.float32, order="C")
        blob *= np.float32(1.0 / 255.0)
        if self._fp16_input:
            blob = blob.astype(np.float16)
        output = self._session.run([self._output_name], {self._input_name: blob})[0]
        return postprocess(
            output,
            num_classes=self._num_classes,
            person_classes=self.person_classes,
            conf_threshold=self._conf,
            iou_threshold=self._iou,
            max_det=self._max_det,
            ratio=boxed.gain,
            pad=boxed.pad,
            orig_shape=(image.shape[0], image.shape[1]),
        )

    def close(self) -> None:
        # ONNX Runtime frees the session's memory when the last reference goes.
        self._session = None

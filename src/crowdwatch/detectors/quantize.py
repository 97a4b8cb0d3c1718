"""Static int8 quantisation of a YOLOv8-style ONNX detector with ONNX Runtime.

The calibration frames are preprocessed exactly as `OnnxDetector.detect` does (letterbox with
Ultralytics' grey, BGR -> RGB, /255, NCHW float32), so the activation ranges ONNX Runtime records
are those the detector will see at run time.

By default the box-decoding tail of the YOLOv8 head (the concatenation of box and class logits,
DFL softmax, anchor arithmetic and the final concat of pixel boxes with 0..1 scores) is left in
float: one int8 scale cannot cover pixel coordinates (0..640) and probabilities (0..1) at once,
and quantising it wrecks the boxes while saving almost no time (the convolutions are the cost).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from crowdwatch.detectors.letterbox import letterbox

CalibMethod = Literal["minmax", "percentile", "entropy"]
ActivationType = Literal["quint8", "qint8"]

_METHODS: dict[str, CalibrationMethod] = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}
_ACTIVATIONS: dict[str, QuantType] = {"quint8": QuantType.QUInt8, "qint8": QuantType.QInt8}


def preprocess(image: npt.NDArray[np.uint8], size: int) -> npt.NDArray[np.float32]:
    """BGR HWC uint8 -> 1x3xSxS float32 RGB in 0..1, letterboxed: OnnxDetector's input."""
    boxed = letterbox(image, size)
    blob = boxed.image[None, :, :, ::-1].transpose(0, 3, 1, 2).astype(np.float32, order="C")
    blob *= np.float32(1.0 / 255.0)
    return blob


class FrameReader(CalibrationDataReader):  # type: ignore[misc]
    """Feeds preprocessed frames to the calibrator one at a time (lazily: 100 frames of
    1x3x640x640 float32 would be ~500 MB if materialised)."""

    def __init__(self, images: Iterable[npt.NDArray[np.uint8]], input_name: str, size: int) -> None:
        self._images: Iterator[npt.NDArray[np.uint8]] = iter(images)
        self._input_name = input_name
        self._size = size
        self.count = 0

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        image = next(self._images, None)
        if image is None:
            return None
        self.count += 1
        return {self._input_name: preprocess(image, self._size)}


def _input_name_and_size(model: onnx.ModelProto) -> tuple[str, int]:
    graph_inputs = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in graph_inputs]
    if len(inputs) != 1:
        raise ValueError(f"expected one image input, got {[i.name for i in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4 or not (dims[2].HasField("dim_value") and dims[3].HasField("dim_value")):
        raise ValueError("quantisation needs a fixed NCHW input size (calibration must match run time)")
    h, w = dims[2].dim_value, dims[3].dim_value
    if h != w:
        raise ValueError(f"only square inputs are supported, got {h}x{w}")
    return inputs[0].name, int(h)


def yolo_decode_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes of the YOLOv8 Detect head's decoding tail: everything in the last module (the one
    holding `dfl`) except its cv2/cv3 convolution branches. Empty when no DFL is found."""
    dfl = [n.name for n in model.graph.node if "/dfl/" in n.name]
    if not dfl:
        return []
    head = dfl[0].split("/dfl/")[0] + "/"  # e.g. "/model.22/"
    return [
        n.name
        for n in model.graph.node
        if n.name.startswith(head) and not n.name.startswith((head + "cv2.", head + "cv3."))
    ]


def quantize_detector(
    fp32_path: Path,
    out_path: Path,
    calibration_images: Iterable[npt.NDArray[np.uint8]],
    *,
    per_channel: bool = True,
    method: CalibMethod = "minmax",
    activation_type: ActivationType = "quint8",
    keep_head_float: bool = True,
    reduce_range: bool = False,
) -> Path:
    """Quantise `fp32_path` to int8 (QDQ, QInt8 weights) calibrated on BGR uint8 frames, writing
    `out_path`. The model's metadata (class names, stride, ...) is kept. Returns `out_path`."""
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    if method not in _METHODS:
        raise ValueError(f"unknown calibration method {method!r} (choose from {sorted(_METHODS)})")
    if activation_type not in _ACTIVATIONS:
        raise ValueError(f"unknown activation type {activation_type!r} (choose from {sorted(_ACTIVATIONS)})")
    original = onnx.load(str(fp32_path))
    input_name, size = _input_name_and_size(original)
    exclude = yolo_decode_nodes(original) if keep_head_float else []
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="crowdwatch-quant-") as tmp:
        prepped = Path(tmp) / "prepped.onnx"
        quant_pre_process(str(fp32_path), str(prepped), skip_symbolic_shape=True)
        reader = FrameReader(calibration_images, input_name, size)
        extra: dict[str, object] = {"ActivationSymmetric": activation_type == "qint8"}
        if method == "percentile":
            extra["CalibPercentile"] = 99.999
        quantize_static(
            str(prepped),
            str(out_path),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            reduce_range=reduce_range,
            activation_type=_ACTIVATIONS[activation_type],
            weight_type=QuantType.QInt8,
            calibrate_method=_METHODS[method],
            nodes_to_exclude=exclude,
            extra_options=extra,
        )
        if reader.count == 0:
            out_path.unlink(missing_ok=True)
            raise ValueError("no calibration images were given")
    quantized = onnx.load(str(out_path))
    have = {p.key for p in quantized.metadata_props}
    for prop in original.metadata_props:
        if prop.key not in have:
            quantized.metadata_props.append(prop)
    onnx.save(quantized, str(out_path))
    return out_path


def quantized_op_counts(path: Path) -> dict[str, int]:
    """How many QuantizeLinear / DequantizeLinear / integer (QLinear*, *Integer) nodes a model has."""
    model = onnx.load(str(path))
    counts: dict[str, int] = {}
    for node in model.graph.node:
        op = node.op_type
        if op in ("QuantizeLinear", "DequantizeLinear") or op.startswith("QLinear") or op.endswith("Integer"):
            counts[op] = counts.get(op, 0) + 1
    return counts

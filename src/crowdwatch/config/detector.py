"""Person detector backends, chosen by `type`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from crowdwatch.config.base import Device, StrictModel


class _DetectorCommon(StrictModel):
    model: str = Field(
        "yolov8s-person",
        description="A catalog name (see `crowdwatch models list`; e.g. ssdlite-pedestrian, MIT), "
        "an int8 model made here (`crowdwatch models quantize yolov8s-person-onnx "
        "--calibration-data FOLDER` makes yolov8s-person-int8; onnx type only), a path to a "
        "weights file, or a stock Ultralytics name such as yolo11n.pt (needs internet on first use).",
    )
    confidence: float = Field(0.25, gt=0, lt=1, description="Keep boxes at least this confident.")
    iou: float = Field(0.45, gt=0, lt=1, description="IoU above which NMS merges two boxes.")
    imgsz: int = Field(640, ge=32, le=4096, description="Model input size in pixels (square).")
    max_detections: int = Field(1000, ge=1, description="Cap on boxes per image after NMS.")


class OnnxDetectorConfig(_DetectorCommon):
    type: Literal["onnx"] = Field("onnx", description="ONNX Runtime on CPU (or CUDA if present).")
    threads: int = Field(0, ge=0, description="Intra-op threads for ONNX Runtime; 0 lets it use every core.")
    providers: list[str] = Field(
        default_factory=list,
        description="ONNX Runtime execution providers in order of preference; empty = CUDA if "
        "available, else CPU.",
    )


class UltralyticsDetectorConfig(_DetectorCommon):
    type: Literal["ultralytics"] = Field("ultralytics", description="Ultralytics YOLO (PyTorch).")
    device: Device = Field(
        "auto", description="'auto' (CUDA when present, else CPU), 'cpu', 'cuda' or 'cuda:N'."
    )
    half: bool = Field(True, description="Half precision on CUDA; ignored on CPU.")
    batch_size: int = Field(
        1,
        ge=1,
        le=64,
        description="Frames from different cameras inferred together in one batch (worth it on a "
        "GPU with several cameras per worker; 1 = no batching, right for CPUs).",
    )
    batch_wait_ms: float = Field(
        5.0,
        ge=0,
        le=1000,
        description="With batch_size > 1: how long the first frame waits for others to join its batch.",
    )


DetectorConfig = Annotated[OnnxDetectorConfig | UltralyticsDetectorConfig, Field(discriminator="type")]

"""Static int8 quantisation of the real YOLOv8s person detector, calibrated on a few Mall frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from crowdwatch.config.detector import OnnxDetectorConfig
from crowdwatch.detectors.catalog import ResolvedModel, resolve
from crowdwatch.detectors.onnx import OnnxDetector
from crowdwatch.detectors.quantize import quantize_detector, quantized_op_counts
from crowdwatch.evaluation.counting import head_points
from crowdwatch.evaluation.labeled import default_data_dir, open_folder, points_in_mask

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mall() -> Path:
    root = default_data_dir() / "mall"
    if not (root / "index.json").is_file():
        pytest.skip(f"Mall data not found at {root} (set CROWDWATCH_DATA_DIR to the shared data folder)")
    return root


def test_int8_model_loads_and_counts_like_fp32(fetched_models_dir: Path, mall: Path, tmp_path: Path) -> None:
    folder = open_folder(mall)
    fp32 = resolve("yolov8s-person-onnx", fetched_models_dir, "onnx")
    calib = folder.select(list(range(1, 280, 35)))  # 8 training frames
    assert len(calib) == 8
    out = quantize_detector(fp32.path, tmp_path / "int8.onnx", (it.load_image() for it in calib))

    assert out.is_file()
    assert out.stat().st_size < fp32.path.stat().st_size / 2
    ops = quantized_op_counts(out)
    assert ops.get("QuantizeLinear", 0) > 0
    assert ops.get("DequantizeLinear", 0) > 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].shape == [1, 6, 8400]

    item = folder.select([500])[0]  # held out from calibration
    image = item.load_image()
    config = OnnxDetectorConfig(model=str(fp32.path), threads=2)
    fp32_det = OnnxDetector(config, fp32)
    int8_det = OnnxDetector(config.model_copy(update={"model": str(out)}), ResolvedModel(out, fp32.entry))
    try:
        ref, got = fp32_det.detect(image), int8_det.detect(image)
    finally:
        fp32_det.close()
        int8_det.close()
    assert folder.roi is not None
    n_ref = int(np.count_nonzero(points_in_mask(head_points(ref), folder.roi)))
    n_got = int(np.count_nonzero(points_in_mask(head_points(got), folder.roi)))
    assert n_ref > 0
    assert abs(n_got - n_ref) <= 3, (n_ref, n_got)
    assert abs(len(got) - len(ref)) <= 3, (len(ref), len(got))

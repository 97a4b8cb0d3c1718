from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import get_args

import pytest

from crowdwatch.config.detector import DetectorConfig, OnnxDetectorConfig, UltralyticsDetectorConfig
from crowdwatch.detectors.base import DetectorUnavailableError
from crowdwatch.detectors.catalog import ModelNotFetchedError, ResolvedModel
from crowdwatch.detectors.onnx import CPU, CUDA, choose_providers, fixed_input_size, session_options
from crowdwatch.detectors.registry import BUILDERS, build_detector
from crowdwatch.detectors.ultralytics import UltralyticsDetector, choose_device


def test_every_config_type_has_a_builder() -> None:
    union = get_args(get_args(DetectorConfig)[0])
    types = {get_args(cls.model_fields["type"].annotation)[0] for cls in union}
    assert set(BUILDERS) == types


@pytest.mark.parametrize(
    ("config", "expected"),
    [(OnnxDetectorConfig(), "yolov8s-person-onnx"), (UltralyticsDetectorConfig(), "yolov8s-person")],
)
def test_building_with_an_empty_models_dir_says_what_to_fetch(
    tmp_path: Path, config: OnnxDetectorConfig | UltralyticsDetectorConfig, expected: str
) -> None:
    with pytest.raises(ModelNotFetchedError, match=f"run `crowdwatch models fetch {expected}`"):
        build_detector(config, tmp_path)


@pytest.mark.parametrize(
    ("requested", "available", "expected"),
    [
        ([], [CPU], [CPU]),
        ([], [CUDA, CPU], [CUDA, CPU]),
        ([CPU], [CUDA, CPU], [CPU]),
    ],
)
def test_choose_providers(requested: list[str], available: list[str], expected: list[str]) -> None:
    assert choose_providers(requested, available) == expected


def test_unavailable_provider_is_an_error_not_a_silent_cpu_fallback() -> None:
    with pytest.raises(ValueError, match="CUDAExecutionProvider"):
        choose_providers([CUDA, CPU], [CPU])


def test_session_options_are_tuned_for_cpu() -> None:
    import onnxruntime as ort

    opts = session_options(2)
    assert opts.intra_op_num_threads == 2
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert opts.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


@pytest.mark.parametrize(
    ("shape", "expected"),
    [([1, 3, 640, 640], 640), ([1, 3, "height", "width"], None), (["batch", 3, 320, 320], 320)],
)
def test_fixed_input_size(shape: list[object], expected: int | None) -> None:
    assert fixed_input_size(shape) == expected


@pytest.mark.parametrize("shape", [[1, 3, 480, 640], [1, 640, 640]])
def test_unsupported_input_shapes(shape: list[object]) -> None:
    with pytest.raises(ValueError, match=r"square|NCHW"):
        fixed_input_size(shape)


@pytest.mark.parametrize(
    ("requested", "cuda", "expected"),
    [("auto", False, "cpu"), ("auto", True, "cuda:0"), ("cpu", True, "cpu"), ("cuda:1", True, "cuda:1")],
)
def test_choose_device(requested: str, cuda: bool, expected: str) -> None:
    assert choose_device(requested, cuda) == expected


def test_cuda_device_without_cuda_is_refused() -> None:
    with pytest.raises(DetectorUnavailableError, match="no CUDA GPU"):
        choose_device("cuda", False)


def test_missing_ultralytics_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"x")
    monkeypatch.delenv("YOLO_OFFLINE", raising=False)
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # makes `import ultralytics` fail
    with pytest.raises(DetectorUnavailableError, match=r"crowdwatch\[ultralytics\].*type: onnx"):
        UltralyticsDetector(UltralyticsDetectorConfig(), ResolvedModel(weights, None))
    assert os.environ["YOLO_OFFLINE"] == "1"  # set before the import, for a local file


def test_stock_name_that_cannot_be_downloaded_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class OfflineYolo:
        def __init__(self, path: str, task: str) -> None:
            raise ConnectionError(f"Download failure for {path}")

    monkeypatch.delenv("YOLO_OFFLINE", raising=False)
    monkeypatch.setattr("crowdwatch.detectors.ultralytics._import_yolo", lambda: OfflineYolo)
    with pytest.raises(DetectorUnavailableError, match=r"could not download 'yolo11n.pt'.*models fetch"):
        UltralyticsDetector(UltralyticsDetectorConfig(), ResolvedModel(Path("yolo11n.pt"), None))
    assert "YOLO_OFFLINE" not in os.environ  # a stock name needs Ultralytics to go online

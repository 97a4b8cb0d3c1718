"""int8 detectors made here: how a config name resolves, and the error when one is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from crowdwatch.config.detector import OnnxDetectorConfig, UltralyticsDetectorConfig
from crowdwatch.detectors.catalog import CATALOG, ModelNotFetchedError, UnknownModelError, model_path
from crowdwatch.detectors.classes import person_class_ids
from crowdwatch.detectors.models_cli import run_models_command
from crowdwatch.detectors.quantized import (
    RECIPES,
    ModelNotQuantizedError,
    quantized_path,
    recipe_for,
    resolve_detector_model,
)
from crowdwatch.detectors.registry import build_detector

INT8 = "yolov8s-person-int8"


def test_the_int8_recipe_derives_from_the_onnx_catalog_model() -> None:
    recipe = RECIPES[INT8]
    assert recipe.parent == "yolov8s-person-onnx"
    assert CATALOG[recipe.parent].format == "onnx"
    assert INT8 not in CATALOG  # made from research-only frames: never a downloadable artifact
    assert recipe.command == (
        "crowdwatch models quantize yolov8s-person-onnx --calibration-data ../shared/data/mall"
    )
    assert recipe_for("yolov8s-person-onnx") is recipe_for(INT8) is recipe


def test_resolves_to_the_made_file_with_the_parents_class_mapping(tmp_path: Path) -> None:
    path = quantized_path(INT8, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"int8 model")
    resolved = resolve_detector_model(INT8, tmp_path, "onnx")
    parent = CATALOG["yolov8s-person-onnx"]
    assert resolved.path == tmp_path / INT8 / "model.onnx"
    assert resolved.name == INT8  # what events report
    assert resolved.entry is not None
    assert (resolved.entry.class_names, resolved.entry.person_classes) == (
        parent.class_names,
        parent.person_classes,
    )
    assert resolved.entry.licence == parent.licence
    assert resolved.entry.architecture == "yolov8"
    # Ultralytics' export metadata survives quantisation and is checked against the parent's.
    assert person_class_ids({0: "Normal", 1: "Fall"}, resolved.entry) == {0, 1}


def test_missing_int8_model_names_the_quantize_command(tmp_path: Path) -> None:
    with pytest.raises(ModelNotQuantizedError) as info:
        build_detector(OnnxDetectorConfig(model=INT8), tmp_path)
    message = str(info.value)
    assert "crowdwatch models quantize yolov8s-person-onnx --calibration-data ../shared/data/mall" in message
    assert f"--models-dir {tmp_path}" in message
    assert isinstance(info.value, ModelNotFetchedError)  # `crowdwatch run` prints it as one line


def test_the_ultralytics_backend_refuses_an_int8_model(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError, match="type onnx"):
        build_detector(UltralyticsDetectorConfig(model=INT8), tmp_path)


def test_other_names_still_resolve_through_the_catalog(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFetchedError, match="crowdwatch models fetch yolov8s-person-onnx"):
        resolve_detector_model("yolov8s-person", tmp_path, "onnx")
    assert model_path(CATALOG["yolov8s-person-onnx"], tmp_path) != quantized_path(INT8, tmp_path)


def test_unknown_parent_is_refused_before_any_work(tmp_path: Path) -> None:
    code = run_models_command(
        ["quantize", "csrnet-density", "--calibration-data", str(tmp_path), "--models-dir", str(tmp_path)]
    )
    assert code == 1
    assert not any(tmp_path.iterdir())

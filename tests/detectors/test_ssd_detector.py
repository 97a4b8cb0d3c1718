"""The SSD backend around a stand-in ONNX file (fixed outputs, real metadata): the registry picks
it from the catalog entry, and it resizes, decodes and maps boxes to the picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from crowdwatch.config.detector import OnnxDetectorConfig
from crowdwatch.detectors.base import DetectorClosedError
from crowdwatch.detectors.catalog import CATALOG, ModelNotFetchedError, ResolvedModel, model_path
from crowdwatch.detectors.registry import build_detector
from crowdwatch.detectors.ssd import SsdOnnxDetector
from crowdwatch.detectors.ssd_config import METADATA_KEY, AnchorLayer, SsdConfig, SsdConfigError
from crowdwatch.detectors.ssd_onnx import BOXES_NAME, INPUT_NAME, LOGITS_NAME

ENTRY = CATALOG["ssdlite-pedestrian"]
CONFIG = SsdConfig(
    input_size=(30, 30),
    align_corners=False,
    half_pixel_centers=False,
    base_anchor_size=(1.0, 1.0),
    layers=(
        AnchorLayer(grid=(2, 2), scales=(0.2,), aspect_ratios=(1.0,), stride=(0.5, 0.5), offset=(0.25, 0.25)),
    ),
    scale_factors=(10.0, 10.0, 5.0, 5.0),
    score_fn="sigmoid",
    logit_scale=1.0,
    class_offset=1,
    iou_threshold=0.6,
    score_threshold=1e-8,
    max_per_class=100,
)
# Anchor 3 (bottom-right cell, 0.2 x 0.2 around (0.75, 0.75)) is a person; the rest background.
LOGITS = np.asarray([[[0.0, -9.0], [0.0, -9.0], [0.0, -9.0], [0.0, 3.0]]], np.float32)


def _stand_in(path: Path, metadata: bool = True) -> Path:
    """An ONNX file with the SSD interface whose outputs ignore the picture."""
    nodes = [
        helper.make_node(
            "Constant", [], [BOXES_NAME], value=numpy_helper.from_array(np.zeros((1, 4, 4), np.float32))
        ),
        helper.make_node("Constant", [], [LOGITS_NAME], value=numpy_helper.from_array(LOGITS)),
    ]
    graph = helper.make_graph(
        nodes,
        "stand-in",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 30, 30, 3])],
        [
            helper.make_tensor_value_info(BOXES_NAME, TensorProto.FLOAT, [1, 4, 4]),
            helper.make_tensor_value_info(LOGITS_NAME, TensorProto.FLOAT, [1, 4, 2]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, {METADATA_KEY: CONFIG.to_json()})
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def test_the_catalog_entry_picks_the_ssd_backend(tmp_path: Path) -> None:
    _stand_in(model_path(ENTRY, tmp_path))
    detector = build_detector(OnnxDetectorConfig(model=ENTRY.name, threads=1), tmp_path)
    assert isinstance(detector, SsdOnnxDetector)
    assert detector.name == ENTRY.name
    assert detector.input_size == 30
    found = detector.detect(np.zeros((100, 200, 3), np.uint8))
    # 0.65..0.85 of each side of a 200 x 100 picture.
    np.testing.assert_allclose(found.xyxy, [[130.0, 65.0, 170.0, 85.0]], atol=1e-3)
    assert found.confidence[0] == pytest.approx(1 / (1 + np.exp(-3.0)), rel=1e-5)
    detector.close()
    with pytest.raises(DetectorClosedError):
        detector.detect(np.zeros((100, 200, 3), np.uint8))


def test_unfetched_model_names_the_fetch_command(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFetchedError, match="crowdwatch models fetch ssdlite-pedestrian"):
        build_detector(OnnxDetectorConfig(model=ENTRY.name), tmp_path)


@pytest.mark.parametrize(("set_iou", "expected"), [(False, 0.6), (True, 0.3)])
def test_nms_overlap_is_the_graphs_unless_configured(tmp_path: Path, set_iou: bool, expected: float) -> None:
    path = _stand_in(tmp_path / "m.onnx")
    config = OnnxDetectorConfig(model=str(path), iou=0.3) if set_iou else OnnxDetectorConfig(model=str(path))
    detector = SsdOnnxDetector(config, ResolvedModel(path, ENTRY))
    assert detector.iou_threshold == pytest.approx(expected)


def test_a_file_without_ssd_settings_is_refused(tmp_path: Path) -> None:
    path = _stand_in(tmp_path / "m.onnx", metadata=False)
    with pytest.raises(SsdConfigError, match="no SSD settings"):
        SsdOnnxDetector(OnnxDetectorConfig(model=str(path)), ResolvedModel(path, ENTRY))


def test_a_graph_without_an_ssd_postprocessor_is_refused() -> None:
    from crowdwatch.detectors.ssd_graph import NotAnSsdGraphError, read_ssd_graph
    from crowdwatch.detectors.tf_graphdef import GraphDef

    from . import tf_wire as w

    graph = GraphDef.decode(w.graph(w.node("image", "Placeholder"), w.node("out", "Relu", ["image"])))
    with pytest.raises(NotAnSsdGraphError, match="Postprocessor/raw_box_encodings"):
        read_ssd_graph(graph)

"""The real SSDLite pedestrian model, built from its TF frozen graph without TensorFlow, against
TensorFlow's own detections (fixtures/ssdlite_tf_reference.json, made once with tensorflow-cpu in
a scratch venv outside the repo) and the plaza clip's hand counts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest
import yaml

from crowdwatch.config.detector import OnnxDetectorConfig
from crowdwatch.config.root import parse_config
from crowdwatch.core.zones import make_zone
from crowdwatch.detectors.catalog import default_models_dir, fetch_models
from crowdwatch.detectors.registry import build_detector
from crowdwatch.detectors.ssd import SsdOnnxDetector

from .conftest import ultralytics_asset

pytestmark = pytest.mark.slow

MODEL = "ssdlite-pedestrian"
REPO = Path(__file__).resolve().parents[2]
CLIP = REPO / "assets" / "vtest_plaza.mp4"
REFERENCE = Path(__file__).parent / "fixtures" / "ssdlite_tf_reference.json"
HAND_COUNTS = {100: 6, 300: 6, 500: 4, 700: 7}  # people in the demo's `plaza` zone, by eye
COUNT_THRESHOLD = 0.3  # no reference score lies within 0.02 of it


@pytest.fixture(scope="module")
def ssd_models_dir() -> Path:
    models_dir = default_models_dir()
    fetch_models([MODEL], models_dir)  # idempotent: verified files are not fetched again
    return models_dir


@pytest.fixture(scope="module")
def detector(ssd_models_dir: Path) -> Iterator[SsdOnnxDetector]:
    built = build_detector(OnnxDetectorConfig(model=MODEL, confidence=0.1, threads=0), ssd_models_dir)
    assert isinstance(built, SsdOnnxDetector)
    yield built
    built.close()


def _plaza_frames(indices: set[int]) -> dict[int, npt.NDArray[np.uint8]]:
    cap = cv2.VideoCapture(str(CLIP))
    out: dict[int, npt.NDArray[np.uint8]] = {}
    i = 0
    try:
        while len(out) < len(indices):
            ok, image = cap.read()
            assert ok, f"clip ended at frame {i}"
            if i in indices:
                out[i] = np.asarray(image, np.uint8)
            i += 1
    finally:
        cap.release()
    return out


def _image(key: str) -> npt.NDArray[np.uint8]:
    if key == "bus":
        image = cv2.imread(str(ultralytics_asset("bus.jpg")))
        assert image is not None
        return np.asarray(image, np.uint8)
    return _plaza_frames({int(key.removeprefix("plaza"))}).popitem()[1]


def test_catalog_name_builds_the_ssd_backend(detector: SsdOnnxDetector) -> None:
    assert detector.name == MODEL
    assert detector.input_size == 300
    assert detector.config.iou_threshold == pytest.approx(0.6)  # the graph's own NMS setting
    assert len(detector.anchors) == 1917


@pytest.mark.parametrize("key", ["bus", "plaza700"])
def test_reproduces_tensorflows_detections(detector: SsdOnnxDetector, key: str) -> None:
    ref: dict[str, Any] = json.loads(REFERENCE.read_text())["images"][key]
    image = _image(key)
    assert list(image.shape[:2]) == ref["shape"]
    ref_xyxy = np.asarray(ref["xyxy"], np.float32)
    ref_scores = np.asarray(ref["scores"], np.float32)
    assert not (np.abs(ref_scores - COUNT_THRESHOLD) < 0.02).any()

    got = detector.detect(image)

    assert int((got.confidence > COUNT_THRESHOLD).sum()) == int((ref_scores > COUNT_THRESHOLD).sum())
    for box, score in zip(ref_xyxy, ref_scores, strict=True):
        gap = np.abs(got.xyxy - box).max(axis=1)
        best = int(gap.argmin())
        assert gap[best] < 2.0, f"no box within 2 px of TF's {box.tolist()} (score {score})"
        assert got.confidence[best] == pytest.approx(score, abs=0.01)


def _demo_config() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_plaza_counts_within_two_of_hand_counts(ssd_models_dir: Path) -> None:
    cfg = parse_config(_demo_config())
    zone_cfg = next(z for z in cfg.cameras[0].zones if z.id == "plaza")
    zone = make_zone(zone_cfg.id, zone_cfg.polygon)
    detector = build_detector(OnnxDetectorConfig(model=MODEL), ssd_models_dir)  # default confidence
    try:
        counted = {i: zone.count(detector.detect(img)) for i, img in _plaza_frames(set(HAND_COUNTS)).items()}
    finally:
        detector.close()
    assert all(abs(counted[i] - HAND_COUNTS[i]) <= 2 for i in HAND_COUNTS), (counted, HAND_COUNTS)

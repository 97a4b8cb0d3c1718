"""The real YOLOv8s person model through both backends on ultralytics' bus.jpg (4 people)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from crowdwatch.config.detector import OnnxDetectorConfig, UltralyticsDetectorConfig
from crowdwatch.core.types import Detections
from crowdwatch.detectors.base import Detector, DetectorClosedError
from crowdwatch.detectors.letterbox import letterbox
from crowdwatch.detectors.nms import box_iou
from crowdwatch.detectors.onnx import CPU, OnnxDetector
from crowdwatch.detectors.registry import build_detector
from crowdwatch.detectors.ultralytics import UltralyticsDetector

pytestmark = pytest.mark.slow

BUS_PEOPLE = 4
AssetReader = Callable[[str], npt.NDArray[np.uint8]]  # the `asset_image` fixture


@pytest.fixture(scope="module")
def onnx_detector(fetched_models_dir: Path) -> Iterator[Detector]:
    detector = build_detector(OnnxDetectorConfig(threads=0), fetched_models_dir)
    yield detector
    detector.close()


@pytest.fixture(scope="module")
def pt_detector(fetched_models_dir: Path) -> Iterator[Detector]:
    pytest.importorskip("ultralytics")
    detector = build_detector(UltralyticsDetectorConfig(device="auto"), fetched_models_dir)
    yield detector
    detector.close()


def test_default_onnx_config_loads_the_onnx_sibling_on_cpu(onnx_detector: Detector) -> None:
    assert isinstance(onnx_detector, OnnxDetector)
    assert onnx_detector.name == "yolov8s-person-onnx"
    assert onnx_detector.input_size == 640  # read from the model's fixed input
    assert onnx_detector.person_classes == {0, 1}
    assert onnx_detector.providers[-1] == CPU


@pytest.mark.parametrize("which", ["onnx_detector", "pt_detector"])
def test_each_backend_finds_the_people_on_the_bus(
    request: pytest.FixtureRequest, which: str, bus_image: npt.NDArray[np.uint8]
) -> None:
    detector: Detector = request.getfixturevalue(which)
    found = detector.detect(bus_image)
    assert abs(len(found) - BUS_PEOPLE) <= 1
    assert (found.class_id == 0).all()
    assert (found.confidence >= 0.25).all()
    h, w = bus_image.shape[:2]
    assert (found.xyxy >= 0).all()
    assert (found.xyxy[:, [0, 2]] <= w).all()
    assert (found.xyxy[:, [1, 3]] <= h).all()
    assert (found.heights() > 100).all()  # whole people, not fragments


def _match(a: Detections, b: Detections) -> npt.NDArray[np.float32]:
    """IoU of each box of `a` with its best match in `b`, requiring one-to-one matches."""
    ious = np.stack([box_iou(box, b.xyxy) for box in a.xyxy])
    best = ious.argmax(axis=1)
    assert len(set(best.tolist())) == len(best), "two boxes matched the same reference box"
    matched: npt.NDArray[np.float32] = ious[np.arange(len(a)), best]
    return matched


@pytest.mark.parametrize("asset", ["bus.jpg", "zidane.jpg"])
def test_onnx_matches_the_ultralytics_reference(
    onnx_detector: Detector, pt_detector: Detector, asset_image: AssetReader, asset: str
) -> None:
    # Ultralytics pads .pt input only to a multiple of 32 (640x480 here) while the ONNX graph
    # is fixed at 640x640, and people cut by the image edge then come out differently. Feeding
    # both the same 640x640 letterboxed picture compares what should match: the fp32 network
    # and our decoding, NMS and class mapping against Ultralytics'.
    image = letterbox(asset_image(asset), 640).image
    ours = onnx_detector.detect(image)
    reference = pt_detector.detect(image)
    assert len(ours) == len(reference) > 0
    assert (_match(ours, reference) > 0.9).all()
    np.testing.assert_allclose(np.sort(ours.confidence), np.sort(reference.confidence), atol=0.02)


def test_same_people_on_the_original_bus_picture(
    onnx_detector: Detector, pt_detector: Detector, bus_image: npt.NDArray[np.uint8]
) -> None:
    # On the original picture (different padding, see above) the people fully in view still
    # match closely; only the man cut by the right edge may differ.
    ours, ref = onnx_detector.detect(bus_image), pt_detector.detect(bus_image)
    assert len(ours) == len(ref)
    ious = _match(ours, ref)
    assert (ious > 0.9).sum() >= len(ious) - 1


@pytest.mark.parametrize("fill", ["black", "noise"])
def test_empty_scene_gives_no_people(onnx_detector: Detector, fill: str) -> None:
    # Not a uniform grey: this model sees a full-frame person (conf ~0.3) in a 114-grey frame.
    rng = np.random.default_rng(1)
    image = (
        np.zeros((576, 768, 3), np.uint8)
        if fill == "black"
        else rng.integers(0, 256, (576, 768, 3), dtype=np.uint8)
    )
    assert len(onnx_detector.detect(image)) == 0


def test_wrong_image_type_is_refused(onnx_detector: Detector) -> None:
    with pytest.raises(ValueError, match="BGR uint8"):
        onnx_detector.detect(np.zeros((64, 64), np.uint8))


@pytest.mark.parametrize("config", [OnnxDetectorConfig(), UltralyticsDetectorConfig()])
def test_detect_after_close_fails(
    fetched_models_dir: Path,
    bus_image: npt.NDArray[np.uint8],
    config: OnnxDetectorConfig | UltralyticsDetectorConfig,
) -> None:
    if config.type == "ultralytics":
        pytest.importorskip("ultralytics")
    detector = build_detector(config, fetched_models_dir)
    detector.close()
    with pytest.raises(DetectorClosedError):
        detector.detect(bus_image)


def test_ultralytics_batch_finds_what_single_frames_find(
    pt_detector: Detector, asset_image: AssetReader
) -> None:
    # Same-size inputs, so one batch and single frames see the same padding.
    images = [letterbox(asset_image(name), 640).image for name in ("bus.jpg", "zidane.jpg")]
    assert isinstance(pt_detector, UltralyticsDetector)
    batched = pt_detector.detect_batch(images)
    assert len(batched) == len(images)
    for image, found in zip(images, batched, strict=True):
        single = pt_detector.detect(image)
        assert len(found) == len(single) > 0
        assert (_match(found, single) > 0.99).all()

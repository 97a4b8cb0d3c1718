"""The Ultralytics backend on a CUDA GPU: half precision finds what full precision finds, and
frames batched across cameras (and a frame's tiles) get the answers they get alone.
Runs on a machine with a GPU (marker `gpu`); skipped elsewhere."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from crowdwatch.config.detector import UltralyticsDetectorConfig
from crowdwatch.core.types import Detections
from crowdwatch.detectors.batching import MicroBatcher
from crowdwatch.detectors.catalog import default_models_dir, fetch
from crowdwatch.detectors.nms import box_iou
from crowdwatch.detectors.registry import build_detector
from crowdwatch.detectors.tiled import TiledDetector
from crowdwatch.detectors.ultralytics import UltralyticsDetector

torch = pytest.importorskip("torch", reason="the ultralytics extra brings PyTorch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

CLIP = Path(__file__).resolve().parents[2] / "assets" / "vtest_plaza.mp4"
FRAMES = (100, 300, 500, 700)
Image = npt.NDArray[np.uint8]


@pytest.fixture(scope="module")
def plaza_frames() -> list[Image]:
    cap = cv2.VideoCapture(str(CLIP))
    out: list[Image] = []
    index = 0
    while len(out) < len(FRAMES):
        ok, image = cap.read()
        assert ok, f"{CLIP} ended at frame {index}"
        if index in FRAMES:
            out.append(np.asarray(image, np.uint8))
        index += 1
    return out


def _detector(half: bool) -> UltralyticsDetector:
    fetch("yolov8s-person", default_models_dir())
    detector = build_detector(UltralyticsDetectorConfig(device="cuda", half=half), default_models_dir())
    assert isinstance(detector, UltralyticsDetector)
    return detector


@pytest.fixture(scope="module")
def half_detector() -> Iterator[UltralyticsDetector]:
    detector = _detector(half=True)
    yield detector
    detector.close()


def matched(a: Detections, b: Detections, iou: float = 0.9) -> int:
    """How many boxes of `a` have a box of `b` over `iou`."""
    if len(a) == 0 or len(b) == 0:
        return 0
    return sum(bool((box_iou(box, b.xyxy) > iou).any()) for box in a.xyxy)


def test_half_precision_finds_the_people_full_precision_finds(
    half_detector: UltralyticsDetector, plaza_frames: list[Image]
) -> None:
    full = _detector(half=False)
    assert half_detector.device.startswith("cuda")
    for image in plaza_frames:
        a, b = half_detector.detect(image), full.detect(image)
        assert len(a) > 0
        assert abs(len(a) - len(b)) <= 1
        assert matched(a, b) >= len(a) - 1
    full.close()


def test_cameras_batched_on_the_gpu_get_their_own_answers(
    half_detector: UltralyticsDetector, plaza_frames: list[Image]
) -> None:
    alone = [half_detector.detect(image) for image in plaza_frames]
    # _KeepOpen: closing the batcher must not close the module's detector.
    batcher = MicroBatcher(_KeepOpen(half_detector), max_batch=8, max_wait_s=0.05)
    cameras = [plaza_frames[i % len(plaza_frames)] for i in range(8)]
    got: dict[int, Detections] = {}
    barrier = threading.Barrier(len(cameras))

    def camera(i: int) -> None:
        barrier.wait()
        got[i] = batcher.detect(cameras[i])

    threads = [threading.Thread(target=camera, args=(i,)) for i in range(len(cameras))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(got) == len(cameras)
    for i, found in got.items():
        reference = alone[i % len(plaza_frames)]
        assert abs(len(found) - len(reference)) <= 1
        assert matched(found, reference) >= len(reference) - 1
    batcher.close()


def test_tiles_batched_on_the_gpu_find_what_tiles_one_by_one_find(
    half_detector: UltralyticsDetector, plaza_frames: list[Image]
) -> None:
    batched = TiledDetector(half_detector, batch_size=16).detect(plaza_frames[0])
    one_by_one = TiledDetector(_Single(half_detector)).detect(plaza_frames[0])
    assert len(one_by_one) > 0
    assert abs(len(batched) - len(one_by_one)) <= 1


class _Single:
    """The detector without `detect_batch`: tiles go one by one."""

    def __init__(self, inner: UltralyticsDetector) -> None:
        self.inner = inner
        self.name = inner.name

    def detect(self, image: Image) -> Detections:
        return self.inner.detect(image)

    def close(self) -> None:
        pass


class _KeepOpen(_Single):
    def detect_batch(self, images: Sequence[Image]) -> list[Detections]:
        return self.inner.detect_batch(images)

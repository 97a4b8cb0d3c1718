"""Tiled detection: tiles cover the region, boxes map back to image pixels, seams merge."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from crowdwatch.core.types import Detections
from crowdwatch.detectors.tiled import TiledDetector, tile_origins


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "expected"),
    [
        (100, 320, 0.2, [0]),
        (320, 320, 0.2, [0]),
        (500, 320, 0.2, [0, 180]),
        (640, 320, 0.25, [0, 240, 320]),
        (1000, 320, 0.0, [0, 320, 640, 680]),
    ],
)
def test_tile_origins_cover_everything(length: int, tile: int, overlap: float, expected: list[int]) -> None:
    starts = tile_origins(length, tile, overlap)
    assert starts == expected
    assert starts[0] == 0
    assert min(starts[-1] + tile, length) == length


class Painted:
    """A fake detector that 'sees' white rectangles painted on a black image."""

    name = "painted"

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def detect(self, image: npt.NDArray[np.uint8]) -> Detections:
        self.calls.append(image.shape[:2])
        mask = image[:, :, 0] > 127
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            return Detections.empty()
        # One box per connected column run is enough for these tests: label by x gaps.
        boxes = []
        order = np.unique(xs)
        groups = np.split(order, np.nonzero(np.diff(order) > 1)[0] + 1)
        for g in groups:
            sel = np.isin(xs, g)
            boxes.append([xs[sel].min(), ys[sel].min(), xs[sel].max() + 1, ys[sel].max() + 1])
        n = len(boxes)
        return Detections(np.array(boxes, np.float32), np.full(n, 0.9, np.float32), np.zeros(n, np.int32))

    def close(self) -> None:
        pass


def image_with_people(*rects: tuple[int, int, int, int]) -> npt.NDArray[np.uint8]:
    img = np.zeros((400, 600, 3), np.uint8)
    for x0, y0, x1, y1 in rects:
        img[y0:y1, x0:x1] = 255
    return img


def test_boxes_come_back_in_image_pixels() -> None:
    det = TiledDetector(Painted(), tile=200, overlap=0.25, upscale=2.0)
    out = det.detect(image_with_people((30, 40, 40, 70)))
    assert len(out) == 1
    np.testing.assert_allclose(out.xyxy[0], [30, 40, 40, 70], atol=1.0)


def test_person_on_a_seam_is_counted_once() -> None:
    # Tiles of 100 px source (200 / upscale 2) starting at 0, 75, ...: x 90..110 straddles seams.
    det = TiledDetector(Painted(), tile=200, overlap=0.25, upscale=2.0)
    out = det.detect(image_with_people((90, 50, 110, 90), (300, 200, 310, 240)))
    assert len(out) == 2


def test_region_limits_the_work_and_offsets_boxes() -> None:
    painted = Painted()
    det = TiledDetector(painted, tile=200, overlap=0.2, upscale=2.0)
    out = det.detect(image_with_people((430, 310, 440, 350), (20, 20, 30, 60)), region=(400, 300, 600, 400))
    assert len(out) == 1  # the person outside the region is not looked at
    np.testing.assert_allclose(out.xyxy[0], [430, 310, 440, 350], atol=1.0)
    assert all(h <= 200 and w <= 200 for h, w in painted.calls)


def test_empty_region_gives_no_boxes() -> None:
    assert len(TiledDetector(Painted()).detect(image_with_people(), region=(10, 10, 10, 50))) == 0


class PaintedBatches(Painted):
    """`Painted` that also runs batches, recording each batch's size."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def detect_batch(self, images: list[npt.NDArray[np.uint8]]) -> list[Detections]:
        self.batches.append(len(images))
        return [self.detect(image) for image in images]


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_a_batching_detector_gets_the_tiles_in_batches_with_the_same_result(batch_size: int) -> None:
    picture = image_with_people((90, 50, 110, 90), (300, 200, 310, 240), (550, 350, 560, 390))
    one_by_one = TiledDetector(Painted(), tile=200, overlap=0.25, upscale=2.0).detect(picture)
    batching = PaintedBatches()
    batched = TiledDetector(batching, tile=200, overlap=0.25, upscale=2.0, batch_size=batch_size).detect(
        picture
    )
    tiles = len(batching.calls)
    assert tiles > 16  # 600x400 in 100 px tiles overlapping by a quarter
    assert batching.batches == [min(batch_size, tiles - i) for i in range(0, tiles, batch_size)]
    np.testing.assert_array_equal(batched.xyxy, one_by_one.xyxy)
    assert len(batched) == 3


def test_tile_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        TiledDetector(Painted(), batch_size=0)


def test_a_person_below_the_region_keeps_their_feet_outside_it() -> None:
    """Cut exactly at the region, a body below it ended on its edge: feet 'inside' the zone."""
    picture = np.zeros((1000, 1000, 3), np.uint8)
    picture[420:580, 480:520] = 255  # feet at y=580; the zone's region ends at y=500
    out = TiledDetector(Painted(), tile=640, overlap=0.2, upscale=2.0).detect(
        picture, region=(0, 0, 1000, 500)
    )
    assert len(out) == 1
    np.testing.assert_allclose(out.xyxy[0], [480, 420, 520, 580], atol=1.0)  # the whole body


def test_two_people_meeting_at_a_seam_stay_two() -> None:
    picture = image_with_people((60, 50, 70, 90), (80, 50, 90, 90))  # apart by 10 px, seams at 75
    assert len(TiledDetector(Painted(), tile=200, overlap=0.25, upscale=2.0).detect(picture)) == 2


class WholeTile(Painted):
    """Also 'sees' a low-confidence person filling the whole tile, as the real model now and
    then does on an enlarged tile."""

    def detect(self, image: npt.NDArray[np.uint8]) -> Detections:
        seen = super().detect(image)
        h, w = image.shape[:2]
        whole = Detections(
            np.array([[0, 0, w, h]], np.float32), np.array([0.4], np.float32), np.ones(1, np.int32)
        )
        return Detections(
            np.concatenate([seen.xyxy, whole.xyxy]),
            np.concatenate([seen.confidence, whole.confidence]),
            np.concatenate([seen.class_id, whole.class_id]),
        )


def test_a_box_filling_a_whole_tile_is_dropped() -> None:
    out = TiledDetector(WholeTile(), tile=200, overlap=0.25, upscale=2.0).detect(
        image_with_people((30, 40, 40, 70))
    )
    assert len(out) == 1
    np.testing.assert_allclose(out.xyxy[0], [30, 40, 40, 70], atol=1.0)

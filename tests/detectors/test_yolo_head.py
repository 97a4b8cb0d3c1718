from __future__ import annotations

import numpy as np
import pytest

from crowdwatch.detectors.yolo_head import HeadShapeError, decode_head, postprocess

# vtest.avi geometry: 768x576 letterboxed to 640 -> ratio 5/6, 80 px padding on top.
RATIO = 640 / 768
PAD = (0.0, 80.0)
ORIG = (576, 768)


def head(anchors: list[tuple[float, float, float, float, list[float]]], n: int = 16) -> np.ndarray:
    """A (1, 4+nc, n) YOLOv8 head output: each anchor is (cx, cy, w, h, class scores); the
    remaining anchors score zero."""
    nc = len(anchors[0][4])
    out = np.zeros((1, 4 + nc, n), np.float32)
    for i, (cx, cy, w, h, scores) in enumerate(anchors):
        out[0, :4, i] = (cx, cy, w, h)
        out[0, 4:, i] = scores
    return out


def run(
    output: np.ndarray, nc: int = 2, persons: frozenset[int] = frozenset({0, 1})
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = postprocess(
        output,
        num_classes=nc,
        person_classes=persons,
        conf_threshold=0.25,
        iou_threshold=0.45,
        max_det=100,
        ratio=RATIO,
        pad=PAD,
        orig_shape=ORIG,
    )
    return d.xyxy, d.confidence, d.class_id


def test_decodes_maps_back_and_merges_normal_and_fall_on_one_person() -> None:
    out = head(
        [
            (320, 320, 100, 200, [0.9, 0.1]),  # Normal
            (322, 321, 100, 200, [0.2, 0.8]),  # Fall on the same person: suppressed
            (100, 200, 50, 100, [0.0, 0.7]),  # Fall elsewhere: a person
            (500, 400, 40, 80, [0.2, 0.1]),  # below the confidence threshold
        ]
    )
    xyxy, conf, cls = run(out)
    np.testing.assert_allclose(conf, [0.9, 0.7])
    assert cls.tolist() == [0, 0]
    # (cx - w/2 - pad_x) / ratio, (cy - h/2 - pad_y) / ratio, ...
    np.testing.assert_allclose(xyxy[0], [270 * 1.2, 140 * 1.2, 370 * 1.2, 340 * 1.2], rtol=1e-5)
    np.testing.assert_allclose(xyxy[1], [75 * 1.2, 70 * 1.2, 125 * 1.2, 170 * 1.2], rtol=1e-5)


def test_best_class_is_taken_over_all_classes_before_keeping_persons() -> None:
    # person, car, dog: like Ultralytics, an anchor that is mostly 'car' is not a person.
    out = head([(320, 320, 100, 200, [0.5, 0.9, 0.0]), (100, 300, 40, 80, [0.6, 0.1, 0.3])])
    xyxy, conf, _ = run(out, nc=3, persons=frozenset({0}))
    np.testing.assert_allclose(conf, [0.6])
    np.testing.assert_allclose(xyxy[0], [80 * 1.2, 180 * 1.2, 120 * 1.2, 260 * 1.2], rtol=1e-5)


def test_boxes_are_clipped_to_the_original_image() -> None:
    xyxy, _, _ = run(head([(10, 100, 60, 60, [0.9, 0.0])]))
    np.testing.assert_allclose(xyxy[0], [0, 0, 40 * 1.2, 50 * 1.2], rtol=1e-5)


def test_nothing_above_threshold_gives_empty_detections() -> None:
    xyxy, conf, cls = run(head([(320, 320, 100, 200, [0.1, 0.2])]))
    assert xyxy.shape == (0, 4)
    assert len(conf) == len(cls) == 0


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param((1, 300, 6), id="end-to-end-export"),
        pytest.param((1, 8400, 6), id="anchors-first"),
        pytest.param((1, 84, 8400), id="coco-head-for-2-classes"),
        pytest.param((2, 6, 10), id="batch-of-2"),
    ],
)
def test_unexpected_head_shapes_are_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(HeadShapeError, match="not 1 x 6 x N"):
        decode_head(np.zeros(shape, np.float32), 2, {0, 1}, 0.25)

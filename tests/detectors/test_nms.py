from __future__ import annotations

import numpy as np
import pytest

from crowdwatch.detectors.nms import box_iou, nms

A = [0, 0, 10, 10]
A_SHIFTED = [1, 0, 11, 10]  # IoU with A = 90/110 ≈ 0.82
A_HALF = [5, 0, 15, 10]  # IoU with A = 50/150 ≈ 0.33
FAR = [100, 100, 120, 130]
FAR2 = [200, 0, 210, 10]


def _boxes(*b: list[int]) -> np.ndarray:
    return np.array(b, dtype=np.float32).reshape(-1, 4)


@pytest.mark.parametrize(
    ("boxes", "scores", "iou", "max_det", "class_ids", "expected"),
    [
        pytest.param(_boxes(A, A_SHIFTED), [0.9, 0.8], 0.5, 100, None, [0], id="overlap-suppressed"),
        pytest.param(_boxes(A_SHIFTED, A), [0.8, 0.9], 0.5, 100, None, [1], id="best-wins-any-order"),
        pytest.param(_boxes(A, A_HALF), [0.7, 0.9], 0.5, 100, None, [1, 0], id="low-overlap-kept"),
        pytest.param(_boxes(A, A_HALF), [0.7, 0.9], 0.3, 100, None, [1], id="stricter-threshold"),
        pytest.param(_boxes(A, FAR, FAR2), [0.5, 0.6, 0.7], 0.5, 100, None, [2, 1, 0], id="disjoint"),
        pytest.param(_boxes(A, FAR, FAR2), [0.5, 0.6, 0.7], 0.5, 2, None, [2, 1], id="max-det"),
        pytest.param(_boxes(A, A_SHIFTED), [0.9, 0.8], 0.5, 100, [0, 1], [0, 1], id="per-class-keeps"),
        pytest.param(_boxes(A, A_SHIFTED), [0.9, 0.8], 0.5, 100, [1, 1], [0], id="per-class-same"),
        pytest.param(_boxes(A, A), [0.9, 0.8], 1.0, 100, None, [0, 1], id="iou-equal-threshold-kept"),
        pytest.param(_boxes(), [], 0.5, 100, None, [], id="empty"),
    ],
)
def test_nms(
    boxes: np.ndarray,
    scores: list[float],
    iou: float,
    max_det: int,
    class_ids: list[int] | None,
    expected: list[int],
) -> None:
    cls = None if class_ids is None else np.array(class_ids, dtype=np.int32)
    keep = nms(boxes, np.array(scores, dtype=np.float32), iou, max_det, cls)
    assert keep.tolist() == expected


def test_per_class_nms_separates_classes_with_negative_coordinates() -> None:
    boxes = _boxes([-50, -50, -10, -10], [-49, -50, -9, -10])
    keep = nms(boxes, np.array([0.9, 0.8], np.float32), 0.5, 10, np.array([0, 3], np.int32))
    assert keep.tolist() == [0, 1]


def test_box_iou_values() -> None:
    ious = box_iou(np.array(A, np.float32), _boxes(A, A_SHIFTED, A_HALF, FAR, [3, 3, 3, 3]))
    np.testing.assert_allclose(ious, [1.0, 90 / 110, 50 / 150, 0.0, 0.0], rtol=1e-6)

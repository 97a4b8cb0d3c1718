"""Greedy non-maximum suppression in numpy (no torch needed by the ONNX backend)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def box_iou(box: npt.NDArray[np.float32], boxes: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """IoU of one xyxy box with each of `boxes`."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


def nms(
    xyxy: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    iou_threshold: float,
    max_det: int,
    class_ids: npt.NDArray[np.int32] | None = None,
) -> npt.NDArray[np.intp]:
    """Indices of the boxes to keep, best score first. A box is dropped when its IoU with a
    better kept box is above `iou_threshold`. With `class_ids`, only boxes of the same class
    suppress each other; without (None), suppression is class-agnostic."""
    boxes = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
    if len(boxes) == 0 or max_det <= 0:
        return np.zeros(0, dtype=np.intp)
    if class_ids is not None:
        # Shift each class to its own region of the plane so boxes of different classes never
        # overlap: one agnostic pass then behaves per class (the torchvision batched-NMS trick).
        span = float(boxes.max() - min(boxes.min(), 0.0)) + 1.0
        boxes = boxes + (np.asarray(class_ids, dtype=np.float32) * span)[:, None]
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < max_det:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        order = rest[box_iou(boxes[best], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)

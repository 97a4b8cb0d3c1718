"""Decode the raw YOLOv8/YOLO11 detection head (1 × (4+nc) × N: cx, cy, w, h, class scores; no
NMS inside) into person boxes in original image coordinates."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import numpy.typing as npt

from crowdwatch.core.types import Detections
from crowdwatch.detectors.base import PERSON_CLASS_ID
from crowdwatch.detectors.letterbox import unletterbox_boxes
from crowdwatch.detectors.nms import nms


class HeadShapeError(ValueError):
    """The model output is not a YOLOv8-style head this decoder understands."""


def _channels_first(output: npt.NDArray[np.floating], num_classes: int) -> npt.NDArray[np.float32]:
    pred = np.asarray(output, dtype=np.float32)
    if pred.ndim == 3 and pred.shape[0] == 1:
        pred = pred[0]
    channels = 4 + num_classes
    # Channels first only: accepting the transpose too would read an end-to-end export's
    # (1, 300, 6) boxes of a 2-class model as raw anchors.
    if pred.ndim == 2 and pred.shape[0] == channels:
        return pred
    raise HeadShapeError(
        f"model output shape {np.shape(output)} is not 1 x {channels} x N (4 box values + "
        f"{num_classes} class scores); NMS-free end-to-end exports are not supported"
    )


def decode_head(
    output: npt.NDArray[np.floating],
    num_classes: int,
    person_classes: Collection[int],
    conf_threshold: float,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Candidates whose best class is a person class and whose score is above the threshold,
    as (xyxy in model input pixels, score). Like Ultralytics, the best class is taken over all
    classes before filtering, so the two backends keep the same candidates."""
    pred = _channels_first(output, num_classes)
    scores = pred[4:]
    conf = scores.max(axis=0)
    cand = np.flatnonzero(conf > conf_threshold)  # filter first: argmax on ~all 8400 is waste
    best = scores[:, cand].argmax(axis=0)
    cand = cand[np.isin(best, np.fromiter(person_classes, dtype=np.int64))]
    cx, cy, w, h = pred[0, cand], pred[1, cand], pred[2, cand], pred[3, cand]
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)
    return xyxy, conf[cand].astype(np.float32)


def postprocess(
    output: npt.NDArray[np.floating],
    *,
    num_classes: int,
    person_classes: Collection[int],
    conf_threshold: float,
    iou_threshold: float,
    max_det: int,
    ratio: float | tuple[float, float],
    pad: tuple[float, float],
    orig_shape: tuple[int, int],
) -> Detections:
    """Decode, suppress duplicates and map to the original image. NMS is class-agnostic: every
    kept class is a person (e.g. 'Normal' and 'Fall'), and one person must not count twice."""
    xyxy, conf = decode_head(output, num_classes, person_classes, conf_threshold)
    keep = nms(xyxy, conf, iou_threshold, max_det)
    boxes = unletterbox_boxes(xyxy[keep], ratio, pad, orig_shape)
    return Detections(boxes, conf[keep], np.full(len(keep), PERSON_CLASS_ID, dtype=np.int32))

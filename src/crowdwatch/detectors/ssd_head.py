"""Turn raw SSD outputs (box encodings and class logits per anchor) into person boxes, the way
the TF Object Detection API's postprocessor does: grid anchors, Faster R-CNN box decoding with
scale factors, sigmoid (or softmax) scores without the background column, greedy NMS in
normalised coordinates, clipping to the image. All numpy, float32 as in TensorFlow."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import numpy.typing as npt

from crowdwatch.core.types import Detections
from crowdwatch.detectors.base import PERSON_CLASS_ID
from crowdwatch.detectors.nms import nms
from crowdwatch.detectors.ssd_config import AnchorLayer, SsdConfig

F32 = npt.NDArray[np.float32]


class SsdOutputError(ValueError):
    """The network outputs do not fit the model's anchors or classes."""


def layer_anchors(layer: AnchorLayer, base_size: tuple[float, float]) -> F32:
    """(rows * cols * per_cell, 4) boxes as [ymin, xmin, ymax, xmax] in 0..1, ordered by row,
    column, then anchor: the order of the box predictor's reshaped outputs."""
    f = np.float32
    ratio_sqrts = np.sqrt(np.asarray(layer.aspect_ratios, f))
    scales = np.asarray(layer.scales, f)
    heights = scales / ratio_sqrts * f(base_size[0])
    widths = scales * ratio_sqrts * f(base_size[1])
    y = np.arange(layer.grid[0], dtype=f) * f(layer.stride[0]) + f(layer.offset[0])
    x = np.arange(layer.grid[1], dtype=f) * f(layer.stride[1]) + f(layer.offset[1])
    cy = np.broadcast_to(y[:, None, None], (*layer.grid, layer.per_cell))
    cx = np.broadcast_to(x[None, :, None], (*layer.grid, layer.per_cell))
    h = np.broadcast_to(heights, cy.shape)
    w = np.broadcast_to(widths, cx.shape)
    half = f(0.5)
    corners = np.stack([cy - half * h, cx - half * w, cy + half * h, cx + half * w], axis=-1)
    return corners.reshape(-1, 4).astype(f)


def generate_anchors(config: SsdConfig) -> F32:
    """All anchors, layer after layer (N x 4, [ymin, xmin, ymax, xmax], normalised)."""
    return np.concatenate([layer_anchors(la, config.base_anchor_size) for la in config.layers])


def decode_boxes(
    encodings: npt.NDArray[np.floating], anchors: F32, scale_factors: tuple[float, float, float, float]
) -> F32:
    """Faster R-CNN box coder: (ty, tx, th, tw) relative to each anchor -> [ymin, xmin, ymax,
    xmax] in the anchors' coordinates."""
    f = np.float32
    enc = np.asarray(encodings, f).reshape(-1, 4)
    ha = anchors[:, 2] - anchors[:, 0]
    wa = anchors[:, 3] - anchors[:, 1]
    yca = anchors[:, 0] + ha / f(2.0)
    xca = anchors[:, 1] + wa / f(2.0)
    sy, sx, sh, sw = (f(s) for s in scale_factors)
    ty, tx, th, tw = enc[:, 0] / sy, enc[:, 1] / sx, enc[:, 2] / sh, enc[:, 3] / sw
    w = np.exp(tw) * wa
    h = np.exp(th) * ha
    yc = ty * ha + yca
    xc = tx * wa + xca
    half = f(2.0)
    return np.stack([yc - h / half, xc - w / half, yc + h / half, xc + w / half], axis=1).astype(f)


def class_scores(logits: npt.NDArray[np.floating], config: SsdConfig) -> F32:
    """Per-anchor scores of the real classes (background column dropped)."""
    x = np.asarray(logits, np.float32)
    x = x / np.float32(config.logit_scale)
    if config.score_fn == "sigmoid":
        scores = np.float32(1.0) / (np.float32(1.0) + np.exp(-x))
    else:
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        scores = e / e.sum(axis=-1, keepdims=True)
    return np.asarray(scores[..., config.class_offset :], np.float32)


def postprocess(
    encodings: npt.NDArray[np.floating],
    logits: npt.NDArray[np.floating],
    anchors: F32,
    config: SsdConfig,
    *,
    person_classes: Collection[int],
    conf_threshold: float,
    iou_threshold: float,
    max_det: int,
    orig_shape: tuple[int, int],
) -> Detections:
    """Person boxes in the original image's pixels (`orig_shape` is (height, width)).

    Filtering by confidence before NMS keeps exactly the boxes that TF's NMS-then-threshold
    keeps: a box below the threshold can only suppress boxes scored lower still. NMS runs on
    normalised coordinates as in TF (the stretch to the image would change the IoUs), and boxes
    are clipped to the image afterwards; one clipped to nothing is dropped."""
    enc = np.asarray(encodings, np.float32).reshape(-1, 4)
    scores = class_scores(np.asarray(logits).reshape(len(enc), -1), config)
    if len(enc) != len(anchors):
        raise SsdOutputError(f"{len(enc)} box encodings for {len(anchors)} anchors")
    person = np.fromiter(person_classes, dtype=np.int64)
    if person.size == 0 or person.max() >= scores.shape[1]:
        raise SsdOutputError(f"person classes {sorted(person_classes)} not in {scores.shape[1]} classes")
    conf = scores[:, person].max(axis=1)
    cand = np.flatnonzero(conf > max(conf_threshold, config.score_threshold))
    boxes = decode_boxes(enc[cand], anchors[cand], config.scale_factors)
    xyxy = boxes[:, [1, 0, 3, 2]]
    keep = nms(xyxy, conf[cand], iou_threshold, max_det)
    kept = np.clip(xyxy[keep], 0.0, 1.0)
    h, w = orig_shape
    kept *= np.asarray([w, h, w, h], np.float32)
    nonempty = (kept[:, 2] > kept[:, 0]) & (kept[:, 3] > kept[:, 1])
    kept, kept_conf = kept[nonempty], conf[cand][keep][nonempty]
    return Detections(kept, kept_conf, np.full(len(kept), PERSON_CLASS_ID, dtype=np.int32))

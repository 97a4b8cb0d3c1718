"""Tiled detection for far-field zones: people a few dozen pixels tall vanish when a whole
frame is shrunk to the model's input, so cut the zone's area into overlapping tiles, enlarge
each to the model's size, detect, map back and merge duplicates across tile seams with NMS."""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from crowdwatch.core.types import Detections
from crowdwatch.detectors.base import Detector
from crowdwatch.detectors.batching import BatchDetector
from crowdwatch.detectors.nms import nms

Region = tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels


def tile_origins(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets covering [0, length) with tiles of `tile` px overlapping by `overlap`;
    the last tile is flush with the end, so no border strip is missed."""
    if length <= tile:
        return [0]
    step = max(1, int(tile * (1.0 - overlap)))
    n = math.ceil((length - tile) / step) + 1
    starts = [min(i * step, length - tile) for i in range(n)]
    return sorted(set(starts))


class TiledDetector:
    def __init__(
        self,
        detector: Detector,
        *,
        tile: int = 640,
        overlap: float = 0.2,
        upscale: float = 2.0,
        iou: float = 0.45,
        batch_size: int = 16,
    ) -> None:
        if upscale < 1:
            raise ValueError("upscale must be at least 1")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        """Tiles per inference when the detector batches (GPU memory grows with it)."""
        self.detector = detector
        self.name = f"{detector.name}+tiles"
        self.tile = tile
        self.overlap = overlap
        self.upscale = upscale
        self.iou = iou

    def detect(self, image: npt.NDArray[np.uint8], region: Region | None = None) -> Detections:
        h, w = image.shape[:2]
        x0, y0, x1, y1 = region if region is not None else (0, 0, w, h)
        x0, y0 = max(0, x0), max(0, y0)
        x1, y1 = min(w, x1), min(h, y1)
        if x1 <= x0 or y1 <= y0:
            return Detections.empty()
        src_tile = max(32, round(self.tile / self.upscale))
        scale = self.upscale
        tiles: list[npt.NDArray[np.uint8]] = []
        offsets: list[tuple[int, int]] = []
        for ty in tile_origins(y1 - y0, src_tile, self.overlap):
            for tx in tile_origins(x1 - x0, src_tile, self.overlap):
                ox, oy = x0 + tx, y0 + ty
                crop = image[oy : min(oy + src_tile, y1), ox : min(ox + src_tile, x1)]
                ch, cw = crop.shape[:2]
                big = cv2.resize(crop, (round(cw * scale), round(ch * scale)), interpolation=cv2.INTER_LINEAR)
                tiles.append(np.ascontiguousarray(big))
                offsets.append((ox, oy))
        boxes, scores, classes = [], [], []
        for det, (ox, oy) in zip(self._detect_all(tiles), offsets, strict=True):
            if len(det) == 0:
                continue
            xyxy = det.xyxy / scale
            xyxy[:, [0, 2]] += ox
            xyxy[:, [1, 3]] += oy
            boxes.append(xyxy)
            scores.append(det.confidence)
            classes.append(det.class_id)
        if not boxes:
            return Detections.empty()
        merged = Detections(np.concatenate(boxes), np.concatenate(scores), np.concatenate(classes))
        kept = merged[nms(merged.xyxy, merged.confidence, self.iou, max_det=100_000)]
        return kept[_not_contained(kept.xyxy, kept.confidence)]

    def _detect_all(self, tiles: list[npt.NDArray[np.uint8]]) -> list[Detections]:
        # On a GPU the tiles of a frame cost about one inference when batched; a detector that
        # cannot batch runs them one by one.
        if not isinstance(self.detector, BatchDetector):
            return [self.detector.detect(t) for t in tiles]
        out: list[Detections] = []
        for i in range(0, len(tiles), self.batch_size):
            out += self.detector.detect_batch(tiles[i : i + self.batch_size])
        return out

    def close(self) -> None:
        self.detector.close()


def _not_contained(
    xyxy: npt.NDArray[np.float32], scores: npt.NDArray[np.float32], threshold: float = 0.8
) -> npt.NDArray[np.bool_]:
    """Drop a box that lies mostly inside a better one: a person cut by a tile seam gives a
    partial box in one tile and a whole one in the next, and their IoU is often too low for
    NMS to merge them."""
    n = len(xyxy)
    keep = np.ones(n, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    area = np.maximum(xyxy[:, 2] - xyxy[:, 0], 0) * np.maximum(xyxy[:, 3] - xyxy[:, 1], 0)
    for rank, i in enumerate(order):
        better = order[:rank][keep[order[:rank]]]
        if len(better) == 0 or area[i] <= 0:
            continue
        ix = np.maximum(0, np.minimum(xyxy[better, 2], xyxy[i, 2]) - np.maximum(xyxy[better, 0], xyxy[i, 0]))
        iy = np.maximum(0, np.minimum(xyxy[better, 3], xyxy[i, 3]) - np.maximum(xyxy[better, 1], xyxy[i, 1]))
        if np.any(ix * iy / area[i] > threshold):
            keep[i] = False
    return keep

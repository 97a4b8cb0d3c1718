"""Tiled detection for far-field zones: people a few dozen pixels tall vanish when a whole
frame is shrunk to the model's input, so cut the zone's area into overlapping tiles, enlarge
each to the model's size, detect, map back and merge duplicates across tile seams.

Three things a plain "NMS over every tile's boxes" gets wrong, handled here:
- the zone's area is widened by a margin before tiling: cut exactly at the zone's bounding
  box, a person standing just below it has their body cut there, and the partial box's bottom
  (the feet) lands on the zone's edge, counted in;
- where one tile sees a person whole and the next one cut by its edge, NMS keeps the whole box
  (on a tie it kept whichever came first, and a cut box's feet are wrong);
- on an enlarged tile the model now and then fires on the whole tile (a low-confidence box
  the size of the tile): a box covering nearly a whole tile is no far-field person, and goes.

Not handled: a person taller than the overlap, cut by a seam in every tile that sees them, can
give two partial boxes that neither NMS nor the containment test joins (counted twice). Merging
boxes cut by a seam into their neighbours was tried and dropped: in crowds it merged different
people, whose boxes overlap as much (ShanghaiTech B, 25 pictures: 7 fewer boxes a picture).
"""

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
        margin: float = 0.25,
    ) -> None:
        """`margin`: how far around the region to look, as a fraction of a tile's source side
        (0.25: 80 px at the default 640 px tiles enlarged 2x)."""
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
        self.margin = margin

    def detect(self, image: npt.NDArray[np.uint8], region: Region | None = None) -> Detections:
        h, w = image.shape[:2]
        x0, y0, x1, y1 = region if region is not None else (0, 0, w, h)
        if x1 <= x0 or y1 <= y0:
            return Detections.empty()
        src_tile = max(32, round(self.tile / self.upscale))
        pad = round(self.margin * src_tile)
        x0, y0 = max(0, x0 - pad), max(0, y0 - pad)
        x1, y1 = min(w, x1 + pad), min(h, y1 + pad)
        if x1 <= x0 or y1 <= y0:
            return Detections.empty()
        scale = self.upscale
        tiles: list[npt.NDArray[np.uint8]] = []
        extents: list[tuple[int, int, int, int]] = []
        for ty in tile_origins(y1 - y0, src_tile, self.overlap):
            for tx in tile_origins(x1 - x0, src_tile, self.overlap):
                ox, oy = x0 + tx, y0 + ty
                ex, ey = min(ox + src_tile, x1), min(oy + src_tile, y1)
                crop = image[oy:ey, ox:ex]
                ch, cw = crop.shape[:2]
                big = cv2.resize(crop, (round(cw * scale), round(ch * scale)), interpolation=cv2.INTER_LINEAR)
                tiles.append(np.ascontiguousarray(big))
                extents.append((ox, oy, ex, ey))
        boxes, scores, classes, cut = [], [], [], []
        for det, (ox, oy, ex, ey) in zip(self._detect_all(tiles), extents, strict=True):
            if len(det) == 0:
                continue
            xyxy = det.xyxy / scale
            xyxy[:, [0, 2]] += ox
            xyxy[:, [1, 3]] += oy
            whole_tile = (xyxy[:, 2] - xyxy[:, 0] >= _WHOLE_TILE * (ex - ox)) & (
                xyxy[:, 3] - xyxy[:, 1] >= _WHOLE_TILE * (ey - oy)
            )
            keep = ~whole_tile
            boxes.append(xyxy[keep])
            scores.append(det.confidence[keep])
            classes.append(det.class_id[keep])
            cut.append(_cut_by_seam(xyxy[keep], (ox, oy, ex, ey), (x0, y0, x1, y1)))
        if not boxes:
            return Detections.empty()
        merged = Detections(np.concatenate(boxes), np.concatenate(scores), np.concatenate(classes))
        if len(merged) == 0:
            return merged
        cut_by_seam = np.concatenate(cut)
        # Ties go to the whole box: of a person seen whole in one tile and cut in the next, NMS
        # must keep the whole one (the cut one's feet are wrong).
        ranking = merged.confidence - _CUT_TIE_BREAK * cut_by_seam
        order = nms(merged.xyxy, ranking.astype(np.float32), self.iou, max_det=100_000)
        kept = merged[order]
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


# A box at least this share of a tile's width and height is the model firing on the tile.
_WHOLE_TILE = 0.9
# Within this many source pixels of a tile's edge, a box is cut by it.
_EDGE_PX = 2.0
# Below any score difference that means something.
_CUT_TIE_BREAK = 1e-4


def _cut_by_seam(
    xyxy: npt.NDArray[np.float32], tile: tuple[int, int, int, int], region: tuple[int, int, int, int]
) -> npt.NDArray[np.bool_]:
    """Boxes touching an edge of their tile that lies inside the region (a seam, not the
    region's or the picture's border): the person goes on in the next tile."""
    tx0, ty0, tx1, ty1 = tile
    rx0, ry0, rx1, ry1 = region
    return (
        ((tx0 > rx0) & (xyxy[:, 0] <= tx0 + _EDGE_PX))
        | ((ty0 > ry0) & (xyxy[:, 1] <= ty0 + _EDGE_PX))
        | ((tx1 < rx1) & (xyxy[:, 2] >= tx1 - _EDGE_PX))
        | ((ty1 < ry1) & (xyxy[:, 3] >= ty1 - _EDGE_PX))
    )


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

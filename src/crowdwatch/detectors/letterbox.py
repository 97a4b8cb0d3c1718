"""Resize keeping the aspect ratio and pad to a square, exactly as Ultralytics does, so the ONNX
backend sees the same pixels as the PyTorch one; and map boxes back to the original image."""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np
import numpy.typing as npt

PAD_VALUE = 114  # Ultralytics' grey: the models were trained with this padding


class Letterboxed(NamedTuple):
    image: npt.NDArray[np.uint8]
    ratio: float
    """Scale applied to the original image."""
    pad: tuple[float, float]
    """(left, top) padding in pixels of the letterboxed image."""
    gain: tuple[float, float]
    """(x, y) scale actually applied: each side is rounded to whole pixels, so they differ a
    little from `ratio` (and from each other); boxes map back by these, as Ultralytics does."""


def letterbox(image: npt.NDArray[np.uint8], new_size: int) -> Letterboxed:
    """Scale `image` by min(new/h, new/w) (up or down), resize with INTER_LINEAR and pad both
    sides with 114 to new_size × new_size; an odd padding puts the extra pixel bottom/right."""
    h, w = image.shape[:2]
    ratio = min(new_size / h, new_size / w)
    new_w, new_h = max(round(w * ratio), 1), max(round(h * ratio), 1)
    if (new_w, new_h) != (w, h):
        image = np.asarray(cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR), np.uint8)
    dw, dh = (new_size - new_w) / 2, (new_size - new_h) / 2
    # Ultralytics' rounding: 67.5 -> 67 on the left/top, 68 on the right/bottom.
    left, top = round(dw - 0.1), round(dh - 0.1)
    out = np.full((new_size, new_size, image.shape[2]), PAD_VALUE, dtype=np.uint8)
    out[top : top + new_h, left : left + new_w] = image
    return Letterboxed(out, ratio, (float(left), float(top)), (new_w / w, new_h / h))


def unletterbox_boxes(
    xyxy: npt.NDArray[np.float32],
    ratio: float | tuple[float, float],
    pad: tuple[float, float],
    orig_shape: tuple[int, int],
) -> npt.NDArray[np.float32]:
    """Map xyxy boxes from letterboxed to original pixel coordinates, clipped to the image
    (`orig_shape` is (height, width)). `ratio`: one scale, or the (x, y) gains of
    `Letterboxed.gain` (exact)."""
    gain_x, gain_y = ratio if isinstance(ratio, tuple) else (ratio, ratio)
    boxes = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4).copy()
    boxes[:, [0, 2]] -= pad[0]
    boxes[:, [1, 3]] -= pad[1]
    boxes[:, [0, 2]] /= gain_x
    boxes[:, [1, 3]] /= gain_y
    h, w = orig_shape
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
    return boxes

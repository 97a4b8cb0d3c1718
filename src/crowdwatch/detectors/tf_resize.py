"""TensorFlow's ResizeBilinear in numpy, so a TF-trained model sees the pixels it was trained on.

OpenCV's INTER_LINEAR samples at half-pixel centres; TF1 graphs (align_corners=False,
half_pixel_centers=False) sample at `dst * in / out`, which shifts the picture by up to half a
source pixel and, downscaling 768 px to 300, changes the input noticeably. No antialiasing,
exactly as TF."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def _axis(
    in_size: int, out_size: int, align_corners: bool, half_pixel_centers: bool
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float32]]:
    # tensorflow/core/kernels/image/resize_bilinear_op.cc: compute_interpolation_weights.
    if align_corners and out_size > 1:
        scale = np.float32((in_size - 1) / (out_size - 1))
    else:
        scale = np.float32(in_size / out_size)
    dst = np.arange(out_size, dtype=np.float32)
    src = (dst + np.float32(0.5)) * scale - np.float32(0.5) if half_pixel_centers else dst * scale
    lower = np.floor(src)
    lo = np.clip(lower.astype(np.intp), 0, in_size - 1)
    hi = np.clip(np.ceil(src).astype(np.intp), 0, in_size - 1)
    return lo, hi, (src - lower).astype(np.float32)


def resize_bilinear(
    image: npt.NDArray[np.generic],
    size: tuple[int, int],
    *,
    align_corners: bool = False,
    half_pixel_centers: bool = False,
) -> npt.NDArray[np.float32]:
    """H x W x C `image` resized to `size` = (height, width), as float32 (TF's output type)."""
    src = np.asarray(image)
    top, bottom, wy = _axis(src.shape[0], size[0], align_corners, half_pixel_centers)
    left, right, wx = _axis(src.shape[1], size[1], align_corners, half_pixel_centers)
    # Gather the four neighbours first and convert only those to float: converting the whole
    # frame would cost more than the interpolation itself.
    rows_top, rows_bottom = src[top], src[bottom]
    f = np.float32
    tl, tr = np.take(rows_top, left, axis=1).astype(f), np.take(rows_top, right, axis=1).astype(f)
    bl, br = np.take(rows_bottom, left, axis=1).astype(f), np.take(rows_bottom, right, axis=1).astype(f)
    wx3 = wx[None, :, None]
    # TF's order of operations: lerp along x on both rows, then along y.
    t = tl + (tr - tl) * wx3
    b = bl + (br - bl) * wx3
    return np.asarray(t + (b - t) * wy[:, None, None], dtype=np.float32)

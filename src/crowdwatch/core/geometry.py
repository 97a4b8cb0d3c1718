"""Plane geometry on image and ground coordinates: point-in-polygon, areas, homographies."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def as_points(points: npt.ArrayLike) -> FloatArray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"expected an (N, 2) array of points, got shape {arr.shape}")
    return arr


def polygon_area(polygon: npt.ArrayLike) -> float:
    """Absolute shoelace area; orientation does not matter."""
    p = as_points(polygon)
    x, y = p[:, 0], p[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def clip_to_rect(polygon: npt.ArrayLike, width: float, height: float) -> FloatArray:
    """The part of `polygon` inside the rectangle [0, width] x [0, height] (Sutherland-Hodgman,
    exact for a simple polygon against a convex window); an empty (0, 2) array when none is."""
    out = as_points(polygon)
    for axis, limit, keep_below in ((0, 0.0, False), (0, width, True), (1, 0.0, False), (1, height, True)):
        if len(out) == 0:
            break
        pts, clipped = out, []
        for i in range(len(pts)):
            cur, prev = pts[i], pts[i - 1]
            cur_in = cur[axis] <= limit if keep_below else cur[axis] >= limit
            prev_in = prev[axis] <= limit if keep_below else prev[axis] >= limit
            if cur_in != prev_in:  # the edge crosses the window's line: add the crossing
                t = (limit - prev[axis]) / (cur[axis] - prev[axis])
                clipped.append(prev + t * (cur - prev))
            if cur_in:
                clipped.append(cur)
        out = np.asarray(clipped, dtype=np.float64).reshape(-1, 2)
    return out


def points_in_polygon(points: npt.ArrayLike, polygon: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Even-odd ray casting, vectorised over points. Points exactly on an edge count as
    inside, so a person standing on the line between two zones is never lost from both."""
    pts = as_points(points)
    poly = as_points(polygon)
    if len(pts) == 0:
        return np.zeros(0, dtype=bool)
    x = pts[:, 0][:, None]
    y = pts[:, 1][:, None]
    x1, y1 = poly[:, 0][None, :], poly[:, 1][None, :]
    x2, y2 = np.roll(poly[:, 0], -1)[None, :], np.roll(poly[:, 1], -1)[None, :]

    crosses = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at_y = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    inside = np.count_nonzero(crosses & (x < x_at_y), axis=1) % 2 == 1

    # On-edge test: collinear with a segment and within its bounding box.
    cross = (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)
    seg_len = np.hypot(x2 - x1, y2 - y1)
    near_line = np.abs(cross) <= 1e-9 * np.maximum(seg_len, 1.0)
    within = (
        (x >= np.minimum(x1, x2) - 1e-9)
        & (x <= np.maximum(x1, x2) + 1e-9)
        & (y >= np.minimum(y1, y2) - 1e-9)
        & (y <= np.maximum(y1, y2) + 1e-9)
    )
    on_edge = np.any(near_line & within, axis=1)
    result: npt.NDArray[np.bool_] = inside | on_edge
    return result


def fit_homography(image_points: npt.ArrayLike, ground_points: npt.ArrayLike) -> FloatArray:
    """Normalised DLT: the 3x3 matrix H with ground ~ H @ image, from 4+ correspondences.

    Raises ValueError for degenerate input (three collinear marks, repeated points), since a
    wrong ground plane would silently give wrong densities."""
    src = as_points(image_points)
    dst = as_points(ground_points)
    if len(src) != len(dst):
        raise ValueError(f"{len(src)} image points but {len(dst)} ground points")
    if len(src) < 4:
        raise ValueError(f"a homography needs at least 4 point pairs, got {len(src)}")
    for name, pts in (("image", src), ("ground", dst)):
        if _max_triangle_area(pts) < 1e-9 * max(1.0, float(np.ptp(pts, axis=0).max()) ** 2):
            raise ValueError(f"{name} points are collinear: they do not span a plane")

    t_src = _normaliser(src)
    t_dst = _normaliser(dst)
    s = _apply(t_src, src)
    d = _apply(t_dst, dst)
    rows = []
    for (x, y), (u, v) in zip(s, d, strict=True):
        rows.append([-x, -y, -1, 0, 0, 0, u * x, u * y, u])
        rows.append([0, 0, 0, -x, -y, -1, v * x, v * y, v])
    _, sv, vt = np.linalg.svd(np.asarray(rows))
    # Rank 8 is needed for a unique solution; 4 points with three on one line (or a repeated
    # point) give rank 7 and an arbitrary, wrong matrix.
    if sv[7] < 1e-8 * sv[0]:
        raise ValueError(
            "calibration points are degenerate (a repeated point, or three of four on one line): "
            "they do not fix a ground plane"
        )
    h_norm = vt[-1].reshape(3, 3)
    h: FloatArray = np.linalg.inv(t_dst) @ h_norm @ t_src
    if abs(h[2, 2]) < 1e-12:
        raise ValueError("degenerate homography (points at infinity)")
    h = h / h[2, 2]
    # Every image point used must map to a finite ground point on the same side of the horizon.
    w = (np.c_[src, np.ones(len(src))] @ h.T)[:, 2]
    if np.any(np.sign(w) != np.sign(w[0])) or np.any(np.abs(w) < 1e-12):
        raise ValueError("calibration points straddle the horizon: check their order")
    # Scaled so that the ground side of the horizon has w > 0 (the same mapping): then any
    # point with w <= 0 is in the sky, whichever way the fit came out.
    return h if w[0] > 0 else -h


def project(h: FloatArray, points: npt.ArrayLike) -> FloatArray:
    pts = as_points(points)
    return _apply(h, pts)


def _apply(h: FloatArray, pts: FloatArray) -> FloatArray:
    homog = np.c_[pts, np.ones(len(pts))] @ h.T
    out: FloatArray = homog[:, :2] / homog[:, 2:3]
    return out


def _normaliser(pts: FloatArray) -> FloatArray:
    """Hartley normalisation: centroid at origin, mean distance sqrt(2)."""
    c = pts.mean(axis=0)
    d = np.sqrt(((pts - c) ** 2).sum(axis=1)).mean()
    s = np.sqrt(2.0) / d if d > 0 else 1.0
    return np.array([[s, 0, -s * c[0]], [0, s, -s * c[1]], [0, 0, 1]], dtype=np.float64)


def _max_triangle_area(pts: FloatArray) -> float:
    best = 0.0
    n = len(pts)
    for i in range(n):
        for j in range(i + 1, n):
            for k in range(j + 1, n):
                a, b, c = pts[i], pts[j], pts[k]
                area = abs((b[0] - a[0]) * (c[1] - a[1]) - (c[0] - a[0]) * (b[1] - a[1])) / 2
                best = max(best, float(area))
    return best

"""Checks of polygon outlines written in config files (zones in pixels, boundaries in lon/lat)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Edge = tuple[int, int]
"""An edge of an outline as the indices, in the list as written, of its two end points."""


def first_crossing(points: Sequence[Sequence[float]]) -> tuple[Edge, Edge] | None:
    """Two edges of the closed outline through `points` that cross, touch or overlap although
    they are not neighbours, or two neighbours that double back along each other; None when the
    outline is simple. A self-crossing outline (a bow tie) has a meaningless shoelace area and an
    inside that depends on the point-in-polygon rule.

    A point repeated right after itself is skipped (a zero-length edge), and so is a closing point
    equal to the first (GeoJSON rings). Sweeps the edges in order of their left end, so that only
    edges whose x ranges overlap are compared: fast enough for boundaries of thousands of points.
    """
    n = len(points)
    keep = [k for k in range(n) if tuple(points[k][:2]) != tuple(points[(k + 1) % n][:2])]
    m = len(keep)
    if m < 3:
        return None  # no outline at all; the area checks report it
    v: npt.NDArray[np.float64] = np.array([points[k][:2] for k in keep], dtype=np.float64)
    a, b = v, np.roll(v, -1, axis=0)  # edge i runs from a[i] to b[i]

    def edge(i: int) -> Edge:
        return keep[i], keep[(i + 1) % m]

    # Neighbours share a point; they overlap only when the second turns straight back.
    nxt = np.roll(b, -1, axis=0)
    back = (_cross(a, b, nxt) == 0) & (np.einsum("ij,ij->i", b - a, nxt - b) < 0)
    if back.any():
        i = int(np.flatnonzero(back)[0])
        return _ordered(edge(i), edge((i + 1) % m))
    if m == 3:
        return None  # every pair of edges are neighbours
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    order = np.argsort(lo[:, 0], kind="stable")
    sorted_left = lo[order, 0]
    for rank, i in enumerate(order):
        # Edges after this one in the sweep whose x range starts before this one's ends.
        end = int(np.searchsorted(sorted_left, hi[i, 0], side="right"))
        j = order[rank + 1 : end]
        gap = (j - i) % m
        j = j[(gap != 1) & (gap != m - 1)]
        j = j[(lo[j, 1] <= hi[i, 1]) & (hi[j, 1] >= lo[i, 1])]
        if j.size == 0:
            continue
        hit = _segments_meet(a[i], b[i], a[j], b[j])
        if hit.any():
            return _ordered(edge(int(i)), edge(int(j[np.flatnonzero(hit)].min())))
    return None


def _ordered(one: Edge, other: Edge) -> tuple[Edge, Edge]:
    return (one, other) if one < other else (other, one)


def _cross(
    o: npt.NDArray[np.float64], p: npt.NDArray[np.float64], q: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """z of (p - o) x (q - o): > 0 when o, p, q turn left, 0 when collinear."""
    return (p[..., 0] - o[..., 0]) * (q[..., 1] - o[..., 1]) - (p[..., 1] - o[..., 1]) * (
        q[..., 0] - o[..., 0]
    )


def _segments_meet(
    p: npt.NDArray[np.float64],
    q: npt.NDArray[np.float64],
    a: npt.NDArray[np.float64],
    b: npt.NDArray[np.float64],
) -> npt.NDArray[np.bool_]:
    """Whether segment p-q shares at least one point with each segment a[k]-b[k]."""
    d1, d2 = np.sign(_cross(a, b, p)), np.sign(_cross(a, b, q))
    d3, d4 = np.sign(_cross(p, q, a)), np.sign(_cross(p, q, b))
    proper = (d1 * d2 < 0) & (d3 * d4 < 0)

    def within(
        o: npt.NDArray[np.float64], s: npt.NDArray[np.float64], t: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.bool_]:
        # o lies in the bounding box of s-t (so, when collinear with it, on the segment).
        return (
            (np.minimum(s[..., 0], t[..., 0]) <= o[..., 0])
            & (o[..., 0] <= np.maximum(s[..., 0], t[..., 0]))
            & (np.minimum(s[..., 1], t[..., 1]) <= o[..., 1])
            & (o[..., 1] <= np.maximum(s[..., 1], t[..., 1]))
        )

    touch = (
        ((d1 == 0) & within(p, a, b))
        | ((d2 == 0) & within(q, a, b))
        | ((d3 == 0) & within(a, p, q))
        | ((d4 == 0) & within(b, p, q))
    )
    meet: npt.NDArray[np.bool_] = proper | touch
    return meet

"""The self-crossing check of config outlines agrees with shapely (GEOS) on awkward cases."""

from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import LinearRing

from crowdwatch.config.polygons import first_crossing


@pytest.mark.parametrize(
    ("points", "crossing"),
    [
        pytest.param([(0, 0), (10, 0), (10, 10), (0, 10)], None, id="square"),
        pytest.param([(0, 0), (10, 0), (10, 10), (0, 10), (0, 0)], None, id="closed-ring"),
        pytest.param([(0, 0), (10, 0), (10, 0), (10, 10)], None, id="repeated-point"),
        pytest.param([(0, 0), (10, 10), (10, 0), (0, 10)], ((0, 1), (2, 3)), id="bow-tie"),
        pytest.param([(0, 0), (10, 0), (5, 0), (5, 5)], ((0, 1), (1, 2)), id="doubles-back"),
        pytest.param([(0, 0), (10, 0), (10, 10), (5, 0), (0, 10)], ((0, 1), (2, 3)), id="touches"),
        # The closing edge, from point 4 back to 0, runs back along the edge from 0 to 1.
        pytest.param([(0, 0), (10, 0), (10, 10), (5, 10), (5, 0)], ((0, 1), (4, 0)), id="closing-edge"),
        pytest.param([(0, 0), (10, 0), (0, 10), (10, 10)], ((1, 2), (3, 0)), id="closing-edge-crosses"),
    ],
)
def test_first_crossing(points: list[tuple[float, float]], crossing: object) -> None:
    assert first_crossing(points) == crossing


def test_agrees_with_shapely_on_random_small_grids() -> None:
    # Points on a 6 x 6 grid: many collinear, touching and overlapping edges.
    rng = np.random.default_rng(7)
    checked = simple = 0
    for _ in range(3000):
        n = int(rng.integers(3, 9))
        points = [(float(x), float(y)) for x, y in rng.integers(0, 6, (n, 2))]
        distinct = [p for k, p in enumerate(points) if p != points[(k + 1) % n]]
        if len(distinct) < 3:
            continue
        ours = first_crossing(points) is None
        assert ours == LinearRing(distinct).is_simple, points
        checked += 1
        simple += ours
    assert checked > 2500
    assert 500 < simple < checked - 500  # both answers were exercised

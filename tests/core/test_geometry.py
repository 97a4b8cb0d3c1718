"""Plane geometry: point-in-polygon, areas, homography fitting."""

from __future__ import annotations

import numpy as np
import pytest

from crowdwatch.core.geometry import (
    as_points,
    clip_to_rect,
    fit_homography,
    points_in_polygon,
    polygon_area,
    project,
)

SQUARE = [(0, 0), (10, 0), (10, 10), (0, 10)]
SQUARE_CW = SQUARE[::-1]
# A "U": the notch between x=3..7 above y=3 is outside.
U_SHAPE = [(0, 0), (10, 0), (10, 10), (7, 10), (7, 3), (3, 3), (3, 10), (0, 10)]
# An arrow head whose reflex vertex is at (5, 4).
CHEVRON = [(0, 0), (5, 4), (10, 0), (5, 10)]


@pytest.mark.parametrize(
    ("polygon", "point", "inside"),
    [
        pytest.param(SQUARE, (5, 5), True, id="square-centre"),
        pytest.param(SQUARE, (15, 5), False, id="square-right-of"),
        pytest.param(SQUARE, (-0.001, 5), False, id="square-just-left"),
        pytest.param(SQUARE, (5, -1), False, id="square-below"),
        pytest.param(SQUARE, (0, 5), True, id="square-on-left-edge"),
        pytest.param(SQUARE, (10, 5), True, id="square-on-right-edge"),
        pytest.param(SQUARE, (5, 0), True, id="square-on-bottom-edge"),
        pytest.param(SQUARE, (5, 10), True, id="square-on-top-edge"),
        pytest.param(SQUARE, (0, 0), True, id="square-on-vertex"),
        pytest.param(SQUARE, (10, 10), True, id="square-on-far-vertex"),
        pytest.param(SQUARE, (11, 10), False, id="square-on-edge-line-beyond-segment"),
        pytest.param(SQUARE_CW, (5, 5), True, id="clockwise-centre"),
        pytest.param(SQUARE_CW, (10, 5), True, id="clockwise-on-edge"),
        pytest.param(SQUARE_CW, (20, 20), False, id="clockwise-outside"),
        pytest.param(U_SHAPE, (5, 6), False, id="u-in-notch"),
        pytest.param(U_SHAPE, (5, 2), True, id="u-in-base"),
        pytest.param(U_SHAPE, (1.5, 8), True, id="u-left-arm"),
        pytest.param(U_SHAPE, (8.5, 8), True, id="u-right-arm"),
        pytest.param(U_SHAPE, (5, 3), True, id="u-on-notch-floor"),
        pytest.param(U_SHAPE, (3, 6), True, id="u-on-notch-wall"),
        pytest.param(U_SHAPE, (5, 10), False, id="u-on-notch-opening"),
        pytest.param(CHEVRON, (5, 2), False, id="chevron-below-reflex-vertex"),
        pytest.param(CHEVRON, (5, 6), True, id="chevron-above-reflex-vertex"),
        pytest.param(CHEVRON, (5, 4), True, id="chevron-on-reflex-vertex"),
        pytest.param(CHEVRON, (2.5, 2), True, id="chevron-on-slanted-edge"),
        pytest.param(CHEVRON, (1, 0.5), False, id="chevron-in-left-notch"),
    ],
)
def test_point_in_polygon(
    polygon: list[tuple[float, float]], point: tuple[float, float], inside: bool
) -> None:
    assert points_in_polygon([point], polygon).tolist() == [inside]


def test_points_in_polygon_is_vectorised_and_keeps_order() -> None:
    points = [(5, 5), (15, 5), (0, 5), (-1, -1)]
    assert points_in_polygon(points, SQUARE).tolist() == [True, False, True, False]


def test_points_in_polygon_with_no_points() -> None:
    result = points_in_polygon(np.zeros((0, 2)), SQUARE)
    assert result.shape == (0,)
    assert result.dtype == bool


def test_ray_through_a_vertex_is_not_counted_twice() -> None:
    # The horizontal ray from (2, 5) passes exactly through the vertex (10, 5) of this diamond.
    diamond = [(5, 0), (10, 5), (5, 10), (0, 5)]
    assert points_in_polygon([(2, 5), (12, 5)], diamond).tolist() == [True, False]


@pytest.mark.parametrize("bad", [[1, 2, 3], [[1, 2, 3]], [[[1, 2]]]])
def test_as_points_rejects_wrong_shapes(bad: object) -> None:
    with pytest.raises(ValueError, match=r"expected an \(N, 2\) array"):
        as_points(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("polygon", "area"),
    [
        pytest.param(SQUARE, 100.0, id="square"),
        pytest.param(SQUARE_CW, 100.0, id="clockwise-square"),
        pytest.param([(0, 0), (4, 0), (0, 3)], 6.0, id="right-triangle"),
        pytest.param(U_SHAPE, 100.0 - 4 * 7, id="u-shape"),
        pytest.param(CHEVRON, 30.0, id="chevron"),
        pytest.param([(0, 0), (1, 1), (2, 2)], 0.0, id="collinear"),
        pytest.param([(1000, 1000), (2000, 1000), (2000, 1500), (1000, 1500)], 500_000.0, id="offset-rect"),
    ],
)
def test_polygon_area(polygon: list[tuple[float, float]], area: float) -> None:
    assert polygon_area(polygon) == pytest.approx(area)


# A plausible camera: ground (metres) ~ H @ image (pixels), with perspective (row 3).
H_TRUE = np.array(
    [
        [0.012, 0.003, -4.0],
        [0.0004, 0.035, -6.0],
        [0.00002, 0.0006, 1.0],
    ]
)
IMAGE_GRID = np.array([(x, y) for x in (100.0, 700.0, 1300.0, 1800.0) for y in (500.0, 1000.0)])


def test_fit_homography_recovers_a_known_homography_from_4_points() -> None:
    image = np.array([(100, 500), (1800, 520), (1700, 1050), (150, 1000)], dtype=float)
    ground = project(H_TRUE, image)
    h = fit_homography(image, ground)
    np.testing.assert_allclose(h, H_TRUE, rtol=1e-6, atol=1e-9)
    assert h[2, 2] == pytest.approx(1.0)


def test_fit_homography_from_8_noisy_points_is_close() -> None:
    rng = np.random.default_rng(42)
    ground = project(H_TRUE, IMAGE_GRID) + rng.normal(0.0, 0.01, size=(len(IMAGE_GRID), 2))  # 1 cm
    h = fit_homography(IMAGE_GRID, ground)
    np.testing.assert_allclose(h, H_TRUE, rtol=0.05, atol=1e-3)
    # What matters: points in between land within a few centimetres of the truth.
    probe = np.array([(400.0, 700.0), (1000.0, 800.0), (1500.0, 600.0)])
    err = np.linalg.norm(project(h, probe) - project(H_TRUE, probe), axis=1)
    assert err.max() < 0.05


def test_fit_homography_identity_on_unit_square() -> None:
    square = [(0, 0), (1, 0), (1, 1), (0, 1)]
    np.testing.assert_allclose(fit_homography(square, square), np.eye(3), atol=1e-12)


def test_project_maps_through_the_homography() -> None:
    scale = np.diag([0.01, 0.01, 1.0])
    np.testing.assert_allclose(project(scale, [(100, 200), (0, 0)]), [(1.0, 2.0), (0.0, 0.0)])


UNIT = [(0, 0), (1, 0), (1, 1), (0, 1)]
PX_SQUARE = [(0, 0), (100, 0), (100, 100), (0, 100)]


@pytest.mark.parametrize(
    ("image", "ground", "message"),
    [
        pytest.param(PX_SQUARE[:3], UNIT[:3], "at least 4 point pairs, got 3", id="three-points"),
        pytest.param(PX_SQUARE, UNIT[:3], "4 image points but 3 ground points", id="length-mismatch"),
        pytest.param(
            [(0, 0), (10, 10), (20, 20), (30, 30)],
            UNIT,
            "image points are collinear",
            id="image-all-collinear",
        ),
        pytest.param(
            PX_SQUARE,
            [(0, 0), (1, 0), (2, 0), (3, 0)],
            "ground points are collinear",
            id="ground-all-collinear",
        ),
        pytest.param(
            [(0, 0), (100, 0), (200, 0), (0, 100)],
            [(0, 0), (1, 0), (2, 0), (0, 1)],
            "degenerate",
            id="three-of-four-collinear",
        ),
        pytest.param(
            [(0, 0), (100, 0), (100, 100), (100, 100)], UNIT, "degenerate", id="repeated-image-point"
        ),
        pytest.param(
            PX_SQUARE, [(0, 0), (1, 0), (0, 1), (1, 1)], "straddle the horizon", id="bowtie-order-mistake"
        ),
    ],
)
def test_fit_homography_rejects_degenerate_input(
    image: list[tuple[float, float]], ground: list[tuple[float, float]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        fit_homography(image, ground)


def test_fit_homography_accepts_many_points_with_collinear_triples() -> None:
    # A 3x3 grid has plenty of collinear triples, but as a whole it fixes the plane.
    image = [(x * 100.0, y * 100.0) for x in range(3) for y in range(3)]
    ground = [(x * 1.0, y * 1.0) for x in range(3) for y in range(3)]
    np.testing.assert_allclose(fit_homography(image, ground), np.diag([0.01, 0.01, 1.0]), atol=1e-9)


def test_points_straddling_the_horizon_raise() -> None:
    # Under H_TRUE the horizon is the image line 0.00002 x + 0.0006 y + 1 = 0; points on both
    # sides of it cannot be marks on one ground plane seen by one camera.
    image = np.array([(0.0, 0.0), (1000.0, 0.0), (1000.0, -3000.0), (0.0, -3000.0)])
    w = np.c_[image, np.ones(4)] @ H_TRUE[2]
    # The premise of the test: some points on each side.
    assert (w > 0).any()
    assert (w < 0).any()
    with pytest.raises(ValueError, match="straddle the horizon"):
        fit_homography(image, project(H_TRUE, image))


@pytest.mark.parametrize(
    ("polygon", "area"),
    [
        ([(10, 10), (50, 10), (50, 50), (10, 50)], 1600.0),  # inside: unchanged
        ([(-50, -50), (150, -50), (150, 150), (-50, 150)], 100 * 100.0),  # covers the window
        ([(50, 50), (150, 50), (150, 150), (50, 150)], 50 * 50.0),  # a corner inside
        ([(200, 0), (300, 0), (300, 100), (200, 100)], 0.0),  # wholly outside
        ([(50, -10), (110, 50), (50, 110), (-10, 50)], 7200 - 4 * 100.0),  # a diamond, its tips cut
    ],
)
def test_clip_to_rect(polygon: list[tuple[float, float]], area: float) -> None:
    clipped = clip_to_rect(polygon, 100, 100)
    assert (polygon_area(clipped) if len(clipped) >= 3 else 0.0) == pytest.approx(area)
    if len(clipped):
        assert clipped.min() >= 0
        assert clipped.max() <= 100

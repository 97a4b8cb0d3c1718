"""DensityMap integration over zones and the linear DensityCalibration."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from crowdwatch.core.density import DensityCalibration, DensityMap
from crowdwatch.core.geometry import points_in_polygon

# A 6 x 8 map of 8-px cells over a 48 x 64 image: one person per cell, 48 in all.
H, W, S = 6, 8, 8.0


def uniform_map(value: float = 1.0, image_shape: tuple[int, int] = (48, 64)) -> DensityMap:
    return DensityMap(np.full((H, W), value, np.float32), (S, S), image_shape)


def image_mask(rows: slice, cols: slice, shape: tuple[int, int] = (48, 64)) -> npt.NDArray[np.bool_]:
    mask = np.zeros(shape, dtype=bool)
    mask[rows, cols] = True
    return mask


@pytest.mark.parametrize(
    ("polygon", "expected"),
    [
        pytest.param([(0, 0), (64, 0), (64, 48), (0, 48)], 48.0, id="full-map"),
        pytest.param([(0, 0), (32, 0), (32, 48), (0, 48)], 24.0, id="left-half"),
        pytest.param([(0, 24), (64, 24), (64, 48), (0, 48)], 24.0, id="bottom-half"),
        # x/64 + y/48 <= 1 holds for 7+6+5+3+2+1 cell centres (its area is 24 cells).
        pytest.param([(0, 0), (64, 0), (0, 48)], 24.0, id="triangle"),
        pytest.param([(-50, -50), (500, -50), (500, 500), (-50, 500)], 48.0, id="beyond-image-clipped"),
        pytest.param([(100, 100), (200, 100), (200, 200)], 0.0, id="outside-image"),
        pytest.param([(-30, -30), (-1, -30), (-1, -1)], 0.0, id="outside-negative"),
        pytest.param([(9, 9), (15, 9), (15, 15), (9, 15)], 1.0, id="one-cell-centre"),
        pytest.param([(1, 1), (3, 1), (3, 3)], 0.0, id="no-cell-centre-inside"),
    ],
)
def test_integrate_polygon(polygon: list[tuple[float, float]], expected: float) -> None:
    assert uniform_map().integrate_polygon(polygon) == pytest.approx(expected)


def test_polygon_mask_matches_brute_force_on_every_cell() -> None:
    # The bounding-box shortcut must select exactly the cells a full scan would.
    rng = np.random.default_rng(3)
    dm = DensityMap(rng.random((30, 40)).astype(np.float32), (7.5, 6.25), (188, 300))
    polygon = np.array([(20, 15), (250, 40), (280, 170), (120, 120), (30, 160)], dtype=float)
    expected = points_in_polygon(dm.cell_centres(), polygon).reshape(30, 40)
    np.testing.assert_array_equal(dm.polygon_mask(polygon), expected)
    assert dm.integrate_polygon(polygon) == pytest.approx(float(dm.values[expected].sum()), rel=1e-6)


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        pytest.param(image_mask(slice(None), slice(None)), 48.0, id="all"),
        pytest.param(image_mask(slice(None), slice(0, 32)), 24.0, id="left-half"),
        pytest.param(image_mask(slice(0, 8), slice(0, 4)), 0.5, id="half-a-cell"),
        pytest.param(image_mask(slice(0, 2), slice(0, 2)), 4 / 64, id="four-pixels"),
        pytest.param(image_mask(slice(0, 0), slice(0, 0)), 0.0, id="empty"),
    ],
)
def test_integrate_mask(mask: npt.NDArray[np.bool_], expected: float) -> None:
    assert uniform_map().integrate_mask(mask) == pytest.approx(expected)


def test_mask_ignores_pixels_no_cell_covers() -> None:
    # A 53 x 70 image gives a 6 x 8 map (floor of /8): the last rows and columns are outside it.
    dm = uniform_map(image_shape=(53, 70))
    assert dm.integrate_mask(image_mask(slice(48, 53), slice(None), (53, 70))) == 0.0
    assert dm.integrate_mask(np.ones((53, 70), dtype=bool)) == pytest.approx(48.0)


def test_mask_with_non_integer_scale() -> None:
    # A map of a downscaled image: each cell covers 12.5 x 12.5 image pixels.
    dm = DensityMap(np.ones((4, 4), np.float32), (12.5, 12.5), (50, 50))
    assert dm.integrate_mask(np.ones((50, 50), dtype=bool)) == pytest.approx(16.0)
    assert dm.integrate_mask(image_mask(slice(None), slice(0, 25), (50, 50))) == pytest.approx(8.0)


def test_integrate_dispatches_on_mask_or_polygon() -> None:
    dm = uniform_map(2.0)
    assert dm.integrate(image_mask(slice(None), slice(0, 32))) == pytest.approx(48.0)
    assert dm.integrate([(0, 0), (32, 0), (32, 48), (0, 48)]) == pytest.approx(48.0)
    assert dm.total() == pytest.approx(96.0)


@pytest.mark.parametrize(
    ("values", "scale", "image_shape"),
    [
        pytest.param(np.zeros((2, 2, 1)), (8.0, 8.0), (16, 16), id="3-d values"),
        pytest.param(np.zeros((2, 2)), (0.0, 8.0), (16, 16), id="zero scale"),
        pytest.param(np.zeros((2, 2)), (8.0, 8.0), (0, 16), id="empty image"),
    ],
)
def test_density_map_rejects_bad_input(
    values: npt.NDArray[np.float64], scale: tuple[float, float], image_shape: tuple[int, int]
) -> None:
    with pytest.raises(ValueError, match=r"2-D|positive"):
        DensityMap(values.astype(np.float32), scale, image_shape)


def test_mask_of_wrong_shape_and_degenerate_polygon_fail() -> None:
    dm = uniform_map()
    with pytest.raises(ValueError, match="mask shape"):
        dm.integrate(np.ones((10, 10), dtype=bool))
    with pytest.raises(ValueError, match="3 vertices"):
        dm.integrate_polygon([(0, 0), (10, 10)])


# ---- calibration ------------------------------------------------------------------------------


def test_fit_recovers_a_known_line() -> None:
    raw = np.linspace(10, 200, 30)
    cal = DensityCalibration.fit(raw, 0.6 * raw - 12.0, camera_id="cam-1")
    assert cal.a == pytest.approx(0.6)
    assert cal.b == pytest.approx(-12.0)
    assert cal.n == 30
    assert cal.residual_std == pytest.approx(0.0, abs=1e-9)
    assert cal.camera_id == "cam-1"


def test_robust_fit_ignores_a_few_outliers() -> None:
    rng = np.random.default_rng(0)
    raw = np.linspace(10, 100, 60)
    true = 0.8 * raw + 5.0 + rng.normal(0, 0.5, raw.size)
    true[::15] += 80.0  # four grossly wrong labels
    plain = DensityCalibration.fit(raw, true)
    robust = DensityCalibration.fit(raw, true, robust=True)
    assert abs(robust.a - 0.8) < 0.02
    assert abs(robust.b - 5.0) < 1.0
    assert abs(plain.b - 5.0) > abs(robust.b - 5.0)  # least squares is pulled by the outliers


@pytest.mark.parametrize(
    ("raw", "true", "match"),
    [
        pytest.param([1.0, 2.0], [1.0], "raw counts but", id="length mismatch"),
        pytest.param([5.0, 5.0, 5.0], [1.0, 2.0, 3.0], "different raw counts", id="constant raw"),
        pytest.param([1.0, 2.0, 3.0], [3.0, 2.0, 1.0], "slope", id="negative slope"),
    ],
)
def test_fit_rejects_unusable_data(raw: list[float], true: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DensityCalibration.fit(raw, true)


def test_apply_never_negative_and_scales_background_by_area() -> None:
    cal = DensityCalibration(a=0.5, b=-10.0)
    assert cal.apply(4.0) == 0.0
    assert cal.apply(40.0) == pytest.approx(10.0)
    assert cal.apply(40.0, area_fraction=0.5) == pytest.approx(15.0)
    np.testing.assert_allclose(cal.apply_many([4.0, 40.0]), [0.0, 10.0])


def test_calibration_round_trips_through_a_dict() -> None:
    cal = DensityCalibration(a=0.71, b=3.2, camera_id="mall", n=640, residual_std=2.5)
    assert DensityCalibration.from_dict(cal.to_dict()) == cal
    assert DensityCalibration.from_dict({}) == DensityCalibration()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"a": 1.0, "offset": 2.0}, id="unknown field"),
        pytest.param({"a": "1.0"}, id="string number"),
        pytest.param({"a": float("nan")}, id="nan"),
        pytest.param({"a": 0.0}, id="zero slope"),
    ],
)
def test_from_dict_rejects_bad_data(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        DensityCalibration.from_dict(data)

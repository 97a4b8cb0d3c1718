"""Density targets: they sum to the head count, sit where the heads are, and respect the ROI."""

from __future__ import annotations

import numpy as np
import pytest

from crowdwatch.core.density import DensityMap
from crowdwatch.training.targets import cell_weights, density_target, make_target, map_shape


@pytest.mark.parametrize(
    ("image_shape", "expected"),
    [((480, 640), (60, 80)), ((767, 1023), (95, 127)), ((8, 8), (1, 1))],
)
def test_map_shape_is_csrnets_floor(image_shape: tuple[int, int], expected: tuple[int, int]) -> None:
    assert map_shape(image_shape, 8) == expected


@pytest.mark.parametrize(
    "points",
    [
        [],
        [[100.0, 50.0]],
        [[0.0, 0.0], [79.0, 59.0]],  # corners: kernels cut by the border
        [[78.5, 63.9], [-3.0, 10.0]],  # in the pixels the network drops, and just outside
        [[40.0, 30.0]] * 25,  # a tight crowd
    ],
)
def test_target_sums_to_the_head_count(points: list[list[float]]) -> None:
    target = density_target(np.asarray(points, dtype=np.float64), (64, 80), sigma_cells=1.5)
    assert target.shape == (8, 10)
    assert target.dtype == np.float32
    assert target.sum() == pytest.approx(len(points), abs=1e-4)
    assert (target >= 0).all()


@pytest.mark.parametrize(("x", "y", "cell"), [(12.0, 20.0, (2, 1)), (0.0, 0.0, (0, 0)), (63.0, 7.0, (0, 7))])
def test_a_head_peaks_in_its_own_cell(x: float, y: float, cell: tuple[int, int]) -> None:
    target = density_target(np.array([[x, y]]), (64, 64), sigma_cells=0.8)
    peak = np.unravel_index(int(np.argmax(target)), target.shape)
    assert (int(peak[0]), int(peak[1])) == cell


def test_sigma_must_be_positive() -> None:
    with pytest.raises(ValueError, match="sigma"):
        density_target(np.zeros((1, 2)), (64, 64), sigma_cells=0)


def test_cell_weights_are_the_roi_share_of_each_cell() -> None:
    roi = np.zeros((16, 24), dtype=bool)
    roi[:, :12] = True  # left half: cell column 1 is half inside
    w = cell_weights(roi, (16, 24))
    assert w.tolist() == [[1.0, 0.5, 0.0], [1.0, 0.5, 0.0]]
    assert (cell_weights(None, (16, 24)) == 1).all()


def test_roi_keeps_only_heads_inside_and_matches_the_evaluation() -> None:
    shape = (64, 96)
    roi = np.zeros(shape, dtype=bool)
    roi[:, :44] = True  # the ROI edge cuts cell column 5 (pixels 40..47) in half
    heads = np.array([[10.0, 10.0], [42.0, 30.0], [43.0, 50.0], [60.0, 20.0], [90.0, 60.0]])
    target = make_target(heads, shape, roi, sigma_cells=1.5)
    assert target.count == 3  # x = 10, 42, 43 are inside; 60 and 90 are not
    # The evaluation integrates a map over the ROI (partial cells by their covered share): the
    # target integrates to exactly the count, even with heads right on the ROI's edge.
    as_map = DensityMap(target.density, (8.0, 8.0), shape)
    assert as_map.integrate_mask(roi) == pytest.approx(3.0, abs=1e-4)
    assert (target.density * target.weights).sum() == pytest.approx(3.0, abs=1e-4)
    assert target.weights[:, 7:].max() == 0.0
    assert target.density[:, 11].max() == 0.0  # the head at x = 90 (cell column 11) is not placed
    # Nothing is placed for the heads outside: the same target as from the inside heads alone.
    inside_only = make_target(heads[:3], shape, roi, sigma_cells=1.5)
    np.testing.assert_array_equal(target.density, inside_only.density)


def test_roi_of_another_size_is_refused() -> None:
    with pytest.raises(ValueError, match="ROI mask"):
        make_target(np.zeros((0, 2)), (64, 64), np.ones((32, 32), dtype=bool))


def test_target_for_an_enlarged_picture_is_on_the_enlarged_grid() -> None:
    shape = (48, 64)  # seen at 1.5x: 72 x 96 pixels, a 9 x 12 map of cells of 16/3 frame pixels
    roi = np.zeros(shape, dtype=bool)
    roi[:, :40] = True
    heads = np.array([[5.0, 5.0], [30.0, 40.0], [39.0, 20.0], [50.0, 10.0]])
    target = make_target(heads, shape, roi, sigma_cells=1.0, scale=1.5)
    assert target.density.shape == (9, 12)
    assert target.count == 3
    as_map = DensityMap(target.density, (64 / 96 * 8, 48 / 72 * 8), shape)  # as the estimator reports it
    np.testing.assert_allclose(target.weights, as_map.mask_coverage(roi))
    assert as_map.integrate_mask(roi) == pytest.approx(3.0, abs=1e-4)
    one = make_target(heads[1:2], shape, sigma_cells=1.0, scale=1.5).density
    peak = np.unravel_index(int(np.argmax(one)), one.shape)
    assert (int(peak[0]), int(peak[1])) == (7, 5)  # (30, 40) -> about (45, 60) enlarged

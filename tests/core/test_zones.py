"""Zones: feet-point counting, ground area and density."""

from __future__ import annotations

import numpy as np
import pytest

from crowdwatch.core.geometry import polygon_area, project
from crowdwatch.core.types import Detections
from crowdwatch.core.zones import GroundCalibration, Zone, make_zone

# Zone 200..600 x 300..700 in image pixels.
ZONE = [(200, 300), (600, 300), (600, 700), (200, 700)]


def boxes(*xyxy: tuple[float, float, float, float]) -> Detections:
    n = len(xyxy)
    return Detections(
        np.asarray(xyxy, dtype=np.float32).reshape(-1, 4),
        np.full(n, 0.9, dtype=np.float32),
        np.zeros(n, dtype=np.int32),
    )


def px_per_metre(scale: float) -> GroundCalibration:
    """Synthetic top-down calibration: `scale` pixels = 1 metre, no perspective."""
    image = [(0, 0), (scale, 0), (scale, scale), (0, scale)]
    ground = [(0, 0), (1, 0), (1, 1), (0, 1)]
    return GroundCalibration.fit(image, ground)


@pytest.mark.parametrize(
    ("box", "counted"),
    [
        pytest.param((350, 400, 450, 600), 1, id="box-and-feet-inside"),
        pytest.param((0, 0, 800, 650), 1, id="box-mostly-outside-feet-inside"),
        pytest.param((390, -500, 410, 320), 1, id="tall-box-from-above-feet-just-inside"),
        pytest.param((250, 320, 550, 720), 0, id="box-mostly-inside-feet-below"),
        pytest.param((170, 310, 250, 690), 1, id="box-straddles-left-edge-feet-inside"),
        pytest.param((100, 310, 220, 690), 0, id="box-straddles-left-edge-feet-outside"),
        pytest.param((300, 500, 500, 700), 1, id="feet-on-bottom-edge"),
        pytest.param((700, 400, 800, 600), 0, id="fully-outside"),
    ],
)
def test_a_person_counts_by_their_feet(box: tuple[float, float, float, float], counted: int) -> None:
    assert make_zone("z", ZONE).count(boxes(box)) == counted


def test_count_over_many_boxes() -> None:
    dets = boxes(
        (350, 400, 450, 600),  # in
        (0, 0, 800, 650),  # in (feet (400, 650))
        (250, 320, 550, 720),  # out (feet (400, 720))
        (700, 400, 800, 600),  # out
    )
    assert make_zone("z", ZONE).count(dets) == 2


def test_count_of_no_detections_is_zero() -> None:
    assert make_zone("z", ZONE).count(Detections.empty()) == 0


def test_concave_zone_does_not_count_people_in_its_notch() -> None:
    u_zone = make_zone(
        "u", [(0, 0), (1000, 0), (1000, 1000), (700, 1000), (700, 300), (300, 300), (300, 1000), (0, 1000)]
    )
    # Feet at (500, 600) are in the notch; feet at (150, 600) in the left arm.
    assert u_zone.count(boxes((450, 400, 550, 600))) == 0
    assert u_zone.count(boxes((100, 400, 200, 600))) == 1


@pytest.mark.parametrize("polygon", [[], [(0, 0)], [(0, 0), (10, 10)]])
def test_zone_needs_three_points(polygon: list[tuple[float, float]]) -> None:
    with pytest.raises(ValueError, match="at least 3 points"):
        Zone("z", np.asarray(polygon, dtype=np.float64))


def test_uncalibrated_zone_has_no_area_and_no_density() -> None:
    zone = make_zone("z", ZONE)
    assert zone.area_m2 is None
    assert zone.density(10) is None


@pytest.mark.parametrize(
    ("scale", "polygon", "area_m2"),
    [
        pytest.param(100, [(0, 0), (1000, 0), (1000, 500), (0, 500)], 50.0, id="1000x500px-at-100px/m"),
        pytest.param(100, [(500, 500), (1500, 500), (1500, 1000), (500, 1000)], 50.0, id="offset"),
        pytest.param(50, [(0, 0), (1000, 0), (1000, 500), (0, 500)], 200.0, id="at-50px/m"),
        pytest.param(100, [(0, 0), (400, 0), (0, 300)], 6.0, id="triangle"),
    ],
)
def test_area_with_a_top_down_calibration(
    scale: float, polygon: list[tuple[float, float]], area_m2: float
) -> None:
    zone = make_zone("z", polygon, px_per_metre(scale))
    assert zone.area_m2 == pytest.approx(area_m2)


@pytest.mark.parametrize(("count", "density"), [(0, 0.0), (50, 1.0), (100, 2.0), (175, 3.5)])
def test_density_is_count_over_area(count: float, density: float) -> None:
    zone = make_zone("z", [(0, 0), (1000, 0), (1000, 500), (0, 500)], px_per_metre(100))
    assert zone.density(count) == pytest.approx(density)


def test_area_under_perspective_is_measured_on_the_ground() -> None:
    # A camera looking down a street: a 10 m x 20 m rectangle on the ground shows as a
    # trapezoid in the image (far side narrower). The zone drawn on that trapezoid is 200 m2.
    image = [(200, 1000), (1700, 1000), (1200, 400), (700, 400)]
    ground = [(0, 0), (10, 0), (10, 20), (0, 20)]
    cal = GroundCalibration.fit(image, ground)
    np.testing.assert_allclose(cal.to_ground(image), ground, atol=1e-9)
    zone = make_zone("street", image, cal)
    assert zone.area_m2 == pytest.approx(200.0)
    # The first 10 m of the street is half of the ground, though it covers more than half of
    # the trapezoid's pixels: far pixels cover more metres.
    mid = project(np.asarray(np.linalg.inv(cal.homography), dtype=np.float64), [(0, 10), (10, 10)])
    near_outline = [image[0], image[1], tuple(mid[1]), tuple(mid[0])]
    assert make_zone("near", near_outline, cal).area_m2 == pytest.approx(100.0)
    assert polygon_area(near_outline) > 0.6 * polygon_area(image)


def test_zone_crossing_the_calibration_horizon_is_rejected() -> None:
    image = [(200, 1000), (1700, 1000), (1200, 400), (700, 400)]
    ground = [(0, 0), (10, 0), (10, 20), (0, 20)]
    cal = GroundCalibration.fit(image, ground)
    # The horizon of this camera is a horizontal image line above y=400; reach far above it.
    with pytest.raises(ValueError, match="past the horizon"):
        make_zone("sky", [(200, 1000), (1700, 1000), (1700, -5000), (200, -5000)], cal)


def test_a_zone_wholly_past_the_horizon_is_rejected() -> None:
    """All its corners agree with each other, but not with the calibration marks: once it got
    a finite, meaningless area."""
    image = [(200, 1000), (1700, 1000), (1200, 400), (700, 400)]
    ground = [(0, 0), (10, 0), (10, 20), (0, 20)]
    cal = GroundCalibration.fit(image, ground)
    # The fit is scaled so that the marks are at w > 0 (the ground side of the horizon).
    assert np.all(np.c_[np.asarray(image, float), np.ones(4)] @ cal.homography[2] > 0)
    horizon_y = -cal.homography[2, 2] / cal.homography[2, 1]  # a level horizon: w = 0 there
    assert horizon_y < 400
    sky = [(0, horizon_y - 200), (1900, horizon_y - 200), (1900, horizon_y - 100), (0, horizon_y - 100)]
    with pytest.raises(ValueError, match="past the horizon"):
        make_zone("sky", sky, cal)

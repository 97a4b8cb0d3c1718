"""Per-camera analysis: each zone counted by its method, smoothed, fed to its tracker."""

from __future__ import annotations

import numpy as np
import pytest

from crowdwatch.core.analysis import CameraAnalysis, FrameInputs, ZoneSpec
from crowdwatch.core.auto_mode import AutoParams
from crowdwatch.core.crowd import GatheringRules
from crowdwatch.core.density import DensityCalibration, DensityMap
from crowdwatch.core.smoothing import NoSmoothing
from crowdwatch.core.types import Detections, EventType, GeoPoint
from crowdwatch.core.zones import make_zone

W, H = 400, 200
LEFT = [[0, 0], [200, 0], [200, 200], [0, 200]]
RIGHT = [[200, 0], [400, 0], [400, 200], [200, 200]]
RULES = GatheringRules(
    enter_count=5, exit_count=3, min_duration_s=0, clear_after_s=0, update_every_s=60, cooldown_s=0
)


def people(*feet: tuple[float, float]) -> Detections:
    xyxy = np.array([[x - 5, y - 40, x + 5, y] for x, y in feet], dtype=np.float32).reshape(-1, 4)
    n = len(feet)
    return Detections(xyxy, np.full(n, 0.9, np.float32), np.zeros(n, np.int32))


def uniform_density(per_cell: float) -> DensityMap:
    # 8 px cells over a 400x200 image: 50 x 25 cells.
    return DensityMap(np.full((25, 50), per_cell, np.float32), (8.0, 8.0), (H, W))


def analysis(
    *specs: ZoneSpec, calibration: DensityCalibration | None = None, probe_every_s: float | None = None
) -> CameraAnalysis:
    auto = AutoParams(
        to_density_count=4, to_detector_count=2, small_person_px=0, min_dwell_s=0, probe_every_s=probe_every_s
    )
    return CameraAnalysis(
        "cam", GeoPoint(30.0, 120.0), specs, NoSmoothing, auto=auto, density_calibration=calibration
    )


def test_detector_zones_count_feet_per_zone() -> None:
    a = analysis(ZoneSpec(make_zone("l", LEFT), RULES), ZoneSpec(make_zone("r", RIGHT), RULES))
    result = a.update(0.0, FrameInputs(people((50, 100), (60, 100), (300, 150))), (W, H))
    assert [(c.zone_id, c.count, c.method) for c in result.counts] == [
        ("l", 2.0, "detector"),
        ("r", 1.0, "detector"),
    ]


def test_density_zone_sums_its_half_of_the_map_with_calibration() -> None:
    cal = DensityCalibration(a=2.0, b=-10.0)  # -10 over the whole frame: -5 for half of it
    a = analysis(ZoneSpec(make_zone("l", LEFT), RULES, "density"), calibration=cal)
    assert not a.needs_detector
    assert a.plan_density(0.0, None)
    # 25 x 25 cells in the left half, 0.02 each = 12.5 raw -> 2 * 12.5 - 5 = 20.
    result = a.update(0.0, FrameInputs(density=uniform_density(0.02), density_model="csrnet"), (W, H))
    assert result.counts[0].count == pytest.approx(20.0)
    assert result.counts[0].method == "density"
    assert result.events[0].type is EventType.GATHERING_STARTED
    assert result.events[0].model == "csrnet"


def test_a_zone_reaching_beyond_the_picture_is_charged_for_its_visible_part_only() -> None:
    """The map covers only the picture: the background offset is shared out by the zone's
    visible share (it was its whole polygon's, as if the map went on beyond the frame)."""
    cal = DensityCalibration(a=2.0, b=-10.0)
    inside = [(200, 0), (400, 0), (400, 200), (200, 200)]
    overhanging = [(200, 0), (900, 0), (900, 200), (200, 200)]  # drawn for a wider picture
    counts = []
    for polygon in (inside, overhanging):
        a = analysis(ZoneSpec(make_zone("z", polygon), RULES, "density"), calibration=cal)
        assert a.zones_outside((W, H)) == ([] if polygon is inside else ["z"])
        result = a.update(0.0, FrameInputs(density=uniform_density(0.02), density_model="csrnet"), (W, H))
        counts.append(result.counts[0].count)
    assert counts == [pytest.approx(20.0), pytest.approx(20.0)]


def test_auto_zone_switches_to_density_and_reports_it() -> None:
    a = analysis(ZoneSpec(make_zone("l", LEFT), RULES, "auto"))
    few = people((50, 100), (60, 100))
    assert not a.plan_density(0.0, few)
    r0 = a.update(0.0, FrameInputs(few, detector_model="yolo"), (W, H))
    assert r0.counts[0].method == "detector"

    crowd = people(*[(10 + 10 * i, 100) for i in range(6)])
    assert a.plan_density(1.0, crowd)
    r1 = a.update(1.0, FrameInputs(crowd, density=uniform_density(0.02), density_model="csrnet"), (W, H))
    assert r1.counts[0].method == "density"
    assert r1.counts[0].count == pytest.approx(12.5)
    assert r1.events[0].method == "density"


def test_auto_zone_probe_finds_a_crowd_the_detector_barely_sees() -> None:
    a = analysis(ZoneSpec(make_zone("l", LEFT), RULES, "auto"), probe_every_s=30)
    two = people((50, 100), (60, 100))
    assert a.plan_density(0.0, two)  # the first frame is probed
    # The map says 12.5 people where the detector found 2: the boxes are not to be trusted.
    r0 = a.update(0.0, FrameInputs(two, density=uniform_density(0.02), density_model="csrnet"), (W, H))
    assert r0.counts[0].method == "density"
    assert r0.counts[0].count == pytest.approx(12.5)
    assert r0.events[0].method == "density"


def test_auto_zone_probe_keeps_boxes_the_map_agrees_with_and_waits_for_the_next_probe() -> None:
    a = analysis(ZoneSpec(make_zone("l", LEFT), RULES, "auto"), probe_every_s=30)
    three = people((50, 100), (60, 100), (70, 100))
    assert a.plan_density(0.0, three)
    # 5 by density against 3 boxes: under twice the boxes, so the boxes stand.
    r0 = a.update(0.0, FrameInputs(three, density=uniform_density(0.008), density_model="csrnet"), (W, H))
    assert (r0.counts[0].method, r0.counts[0].count) == ("detector", 3.0)
    assert not a.plan_density(10.0, three)  # next probe at 30 s
    assert a.plan_density(30.0, three)


def test_tiled_zone_counts_tiled_boxes() -> None:
    a = analysis(ZoneSpec(make_zone("l", LEFT), RULES, "tiled"))
    assert [z.zone_id for z in a.tiled_zones()] == ["l"]
    assert not a.needs_detector
    result = a.update(0.0, FrameInputs(tiled=people((20, 20), (30, 30), (300, 30))), (W, H))
    assert result.counts[0].count == 2.0
    assert result.counts[0].method == "tiled"


def test_missing_model_output_is_a_clear_error() -> None:
    a = analysis(ZoneSpec(make_zone("l", LEFT), RULES, "density"))
    with pytest.raises(ValueError, match="no density map"):
        a.update(0.0, FrameInputs(), (W, H))


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown counting method"):
        ZoneSpec(make_zone("l", LEFT), RULES, "guess")

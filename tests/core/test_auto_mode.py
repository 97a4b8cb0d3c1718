"""`auto` counting: switches to density in crowds and back, with hysteresis and dwell."""

from __future__ import annotations

import numpy as np
import pytest

from crowdwatch.core.auto_mode import AutoParams, AutoSwitch
from crowdwatch.core.types import Detections


def mode(sw: AutoSwitch) -> str:
    # Through a call: mypy would otherwise narrow `sw.mode` after the first assert.
    return sw.mode


def boxes(n: int, height: float = 80.0) -> Detections:
    xyxy = np.array([[10 * i, 100, 10 * i + 20, 100 + height] for i in range(n)], dtype=np.float32)
    return Detections(xyxy.reshape(-1, 4), np.full(n, 0.9, np.float32), np.zeros(n, np.int32))


PARAMS = AutoParams(to_density_count=15, to_detector_count=8, small_person_px=28, min_dwell_s=10)


@pytest.mark.parametrize(
    ("n", "height", "expected"),
    [
        (0, 80, "detector"),
        (14, 80, "detector"),
        (15, 80, "density"),
        (40, 80, "density"),
        (8, 20, "density"),  # small people: the detector misses most of them
        (7, 20, "detector"),  # ...but a handful of small boxes is not a crowd
        (8, 28, "detector"),  # at the size limit: still reliable
    ],
)
def test_first_decision(n: int, height: float, expected: str) -> None:
    assert AutoSwitch(PARAMS).before_density(0.0, boxes(n, height)) == expected


def test_back_to_detector_below_lower_threshold_after_dwell() -> None:
    sw = AutoSwitch(PARAMS)
    assert sw.before_density(0.0, boxes(20)) == "density"
    sw.after_density(5.0, 3.0)  # few people, but the dwell has not passed
    assert mode(sw) == "density"
    sw.after_density(10.0, 8.0)  # dwell passed, but 8 is not below 8
    assert mode(sw) == "density"
    sw.after_density(10.0, 7.9)
    assert mode(sw) == "detector"


def test_hysteresis_band_keeps_the_current_mode() -> None:
    sw = AutoSwitch(PARAMS)
    for t, n in [(0, 12), (20, 14), (40, 9)]:
        assert sw.before_density(float(t), boxes(n)) == "detector"
    assert sw.before_density(60.0, boxes(15)) == "density"
    for when, c in [(80.0, 14.0), (100.0, 9.0), (120.0, 8.0)]:
        sw.after_density(when, c)
        assert mode(sw) == "density"


def test_dwell_blocks_an_immediate_switch_back_to_density() -> None:
    sw = AutoSwitch(PARAMS)
    sw.before_density(0.0, boxes(20))
    sw.after_density(10.0, 2.0)
    assert mode(sw) == "detector"
    assert sw.before_density(12.0, boxes(3)) == "detector"  # the crowd left
    assert sw.before_density(15.0, boxes(30)) == "detector"  # a new one, 5 s after the switch
    assert sw.before_density(20.0, boxes(30)) == "density"


def test_boxes_and_map_disagreeing_do_not_make_the_mode_flap() -> None:
    """Many boxes, a near-empty map (big, near people): the box rule and the map's rule took
    turns every dwell, and the zone's count swung between the two."""
    sw = AutoSwitch(PARAMS)
    modes = []
    for t in range(120):
        if sw.before_density(float(t), boxes(16)) == "density":
            sw.after_density(float(t), 6.0)
        modes.append(mode(sw))
    assert modes[:10] == ["density"] * 10
    assert modes[10:] == ["detector"] * 110  # the map said sparse: the boxes are trusted


@pytest.mark.parametrize(
    ("boxes_then", "probe", "expected"),
    [
        (3, None, "density"),  # the boxes fell below to_detector_count: a new scene
        (16, 9.0, "density"),  # a probe sees people on the map again
        (16, 7.0, "detector"),  # a probe still sees (almost) nobody
        (16, None, "detector"),
    ],
)
def test_the_box_rule_comes_back_with_a_new_scene_or_the_map(
    boxes_then: int, probe: float | None, expected: str
) -> None:
    sw = AutoSwitch(PROBING)
    sw.before_density(0.0, boxes(16))
    sw.after_density(10.0, 6.0)
    assert mode(sw) == "detector"
    sw.before_density(20.0, boxes(boxes_then))
    if probe is not None:
        sw.after_probe(20.0, probe, boxes_then)
    assert sw.before_density(30.0, boxes(16)) == expected


def test_params_refuse_inverted_thresholds() -> None:
    with pytest.raises(ValueError, match="hysteresis"):
        AutoParams(to_density_count=8, to_detector_count=8)


PROBING = AutoParams(
    to_density_count=15, to_detector_count=8, small_person_px=28, min_dwell_s=10, probe_every_s=30
)


@pytest.mark.parametrize(
    ("n_boxes", "density", "expected"),
    [
        (9, 287.0, "density"),  # a dense street the detector sees 9 of
        (0, 15.0, "density"),  # no boxes at all, a crowd on the map
        (0, 14.9, "detector"),  # under the crowd threshold, whatever the boxes
        (7, 14.0, "detector"),
        (10, 19.9, "detector"),  # under twice the boxes: they are about right
        (10, 20.0, "density"),
    ],
)
def test_probe_switches_when_the_map_counts_far_more_than_the_boxes(
    n_boxes: int, density: float, expected: str
) -> None:
    sw = AutoSwitch(PROBING)
    assert sw.before_density(0.0, boxes(n_boxes)) == "detector"
    assert sw.probe_due(0.0)
    assert sw.after_probe(0.0, density, n_boxes) == expected


def test_probes_come_every_interval_and_only_while_on_boxes() -> None:
    sw = AutoSwitch(PROBING)
    assert sw.probe_due(0.0)
    sw.after_probe(0.0, 3.0, 3)
    assert [sw.probe_due(t) for t in (10.0, 29.9, 30.0)] == [False, False, True]
    sw.after_probe(30.0, 100.0, 5)
    assert mode(sw) == "density"
    assert not sw.probe_due(100.0)  # counting by density already


def test_a_probe_respects_the_dwell_after_switching_back() -> None:
    sw = AutoSwitch(PROBING)
    assert sw.before_density(0.0, boxes(20)) == "density"
    sw.after_density(10.0, 2.0)
    assert mode(sw) == "detector"
    assert not sw.probe_due(15.0)  # within the dwell: no switching yet, so no probe
    assert sw.after_probe(15.0, 100.0, 2) == "detector"  # a map the frame had anyway: no flap
    assert sw.probe_due(20.0)


@pytest.mark.parametrize(("every", "due_again_at"), [(0.0, 0.0), (None, None)])
def test_probe_every_frame_or_never(every: float | None, due_again_at: float | None) -> None:
    sw = AutoSwitch(AutoParams(probe_every_s=every))
    if due_again_at is None:
        assert not sw.probe_due(0.0)
        assert sw.after_probe(0.0, 500.0, 1) == "detector"  # probing off: maps never switch
    else:
        sw.after_probe(0.0, 3.0, 3)
        assert sw.probe_due(due_again_at)


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [({"probe_every_s": -1.0}, "probe_every_s must not be negative"), ({"probe_ratio": 0.5}, "at least 1")],
)
def test_bad_probe_settings_are_refused(kwargs: dict[str, float], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        AutoParams(**kwargs)

"""The gathering state machine of one zone, driven by samples at explicit timestamps."""

from __future__ import annotations

from typing import Any

import pytest

from crowdwatch.core.crowd import GatheringRules, GatheringTracker, Phase, ZoneIdentity
from crowdwatch.core.severity import SeverityBands
from crowdwatch.core.types import CountMethod, CrowdEvent, EventType, GeoPoint, Severity, ZoneCount

CAM, ZONE = "cam-1", "plaza"
LOCATION = GeoPoint(lat=31.23, lon=121.47)
MODEL = "yolov8s-person"

# Default count bands for enter_count=10: medium 15, high 20, critical 30.
BASE: dict[str, Any] = {
    "enter_count": 10,
    "exit_count": 6,
    "min_duration_s": 5,
    "clear_after_s": 10,
    "update_every_s": 30,
    "cooldown_s": 60,
}

# A step is (ts, count) or (ts, count, density).
Step = tuple[float, ...]


def rules(**changes: Any) -> GatheringRules:
    return GatheringRules(**(BASE | changes))


def tracker(**changes: Any) -> GatheringTracker:
    return GatheringTracker(ZoneIdentity(CAM, ZONE, LOCATION), rules(**changes))


def sample(
    ts: float, count: float, density: float | None = None, method: CountMethod = "detector"
) -> ZoneCount:
    return ZoneCount(CAM, ZONE, ts, count, density, method)


def hold(t0: float, t1: float, count: float, density: float | None = None, step: float = 1.0) -> list[Step]:
    """Samples every `step` seconds from t0 to t1 inclusive, all with the same count."""
    n = round((t1 - t0) / step)
    return [
        (t0 + i * step, count) if density is None else (t0 + i * step, count, density) for i in range(n + 1)
    ]


def feed(tr: GatheringTracker, steps: list[Step]) -> list[CrowdEvent]:
    events: list[CrowdEvent] = []
    for ts, count, *density in steps:
        events.extend(tr.observe(sample(ts, count, density[0] if density else None), MODEL))
    return events


def kinds(events: list[CrowdEvent]) -> list[tuple[float, str]]:
    return [(e.ts, e.type.value.removeprefix("crowd.gathering.")) for e in events]


# -- transitions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "steps", "expected", "phase"),
    [
        pytest.param({}, hold(0, 100, 9), [], Phase.IDLE, id="below-enter-never-starts"),
        pytest.param({}, hold(0, 3, 10), [], Phase.PENDING, id="idle-to-pending"),
        pytest.param({}, [*hold(0, 4, 10), (5, 5)], [], Phase.IDLE, id="pending-to-idle-on-drop"),
        pytest.param(
            {}, [*hold(0, 4, 10), (5, 5), *hold(6, 10, 10)], [], Phase.PENDING, id="drop-restarts-pending"
        ),
        pytest.param(
            {},
            [*hold(0, 4, 10), (5, 5), *hold(6, 11, 10)],
            [(11, "started")],
            Phase.ACTIVE,
            id="restarted-pending-starts-after-full-min-duration",
        ),
        pytest.param({}, hold(0, 4, 10), [], Phase.PENDING, id="one-sample-before-min-duration"),
        pytest.param({}, hold(0, 5, 10), [(5, "started")], Phase.ACTIVE, id="starts-exactly-at-min-duration"),
        pytest.param(
            {"min_duration_s": 4.5},
            hold(0, 5, 10),
            [(5, "started")],
            Phase.ACTIVE,
            id="first-sample-past-min",
        ),
        pytest.param(
            {"min_duration_s": 0}, [(0, 10)], [(0, "started")], Phase.ACTIVE, id="min-duration-zero"
        ),
        pytest.param(
            {}, hold(0, 6, 10, step=3), [(6, "started")], Phase.ACTIVE, id="sparse-samples-start-when-held"
        ),
        pytest.param(
            {}, [*hold(0, 5, 10), (6, 3)], [(5, "started")], Phase.CLEARING, id="active-to-clearing"
        ),
        pytest.param(
            {},
            [*hold(0, 5, 10), *hold(6, 15, 3), *hold(16, 20, 10)],
            [(5, "started")],
            Phase.ACTIVE,
            id="dip-shorter-than-clear-after-back-to-active",
        ),
        pytest.param(
            {},
            [*hold(0, 5, 10), *hold(6, 15, 3)],
            [(5, "started")],
            Phase.CLEARING,
            id="one-sample-before-clear-after",
        ),
        pytest.param(
            {},
            [*hold(0, 5, 10), *hold(6, 16, 3)],
            [(5, "started"), (16, "ended")],
            Phase.COOLDOWN,
            id="ends-exactly-at-clear-after",
        ),
        pytest.param(
            {},
            [*hold(0, 5, 10), *hold(6, 14, 3), (15, 8), *hold(16, 25, 3)],
            [(5, "started")],
            Phase.CLEARING,
            id="a-sample-above-exit-restarts-the-clear-timer",
        ),
        pytest.param(
            {},
            [*hold(0, 5, 10), *hold(6, 14, 3), (15, 8), *hold(16, 26, 3)],
            [(5, "started"), (26, "ended")],
            Phase.COOLDOWN,
            id="restarted-clear-timer-ends",
        ),
        pytest.param(
            {"clear_after_s": 0},
            [*hold(0, 5, 10), (6, 3)],
            [(5, "started"), (6, "ended")],
            Phase.COOLDOWN,
            id="clear-after-zero",
        ),
        # Hysteresis: exit_count < count < enter_count.
        pytest.param({}, hold(0, 100, 8), [], Phase.IDLE, id="between-exit-and-enter-does-not-start"),
        pytest.param(
            {},
            [*hold(0, 5, 10), *hold(6, 40, 8)],
            [(5, "started"), (35, "updated")],
            Phase.ACTIVE,
            id="between-exit-and-enter-keeps-active",
        ),
        pytest.param(
            {},
            [*hold(0, 5, 10), *hold(6, 30, 6)],
            [(5, "started")],
            Phase.ACTIVE,
            id="exactly-exit-is-not-below",
        ),
        pytest.param(
            {}, [*hold(0, 5, 10), (6, 5.99)], [(5, "started")], Phase.CLEARING, id="just-below-exit-clears"
        ),
        # Cooldown: ended at 16, blocked until 76, then min_duration again.
        pytest.param(
            {},
            [*hold(0, 5, 10), *hold(6, 16, 3), *hold(17, 75, 20)],
            [(5, "started"), (16, "ended")],
            Phase.COOLDOWN,
            id="cooldown-blocks-new-episode",
        ),
        pytest.param(
            {},
            [*hold(0, 5, 10), *hold(6, 16, 3), *hold(17, 80, 20)],
            [(5, "started"), (16, "ended")],
            Phase.PENDING,
            id="after-cooldown-min-duration-again",
        ),
        pytest.param(
            {},
            [*hold(0, 5, 10), *hold(6, 16, 3), *hold(17, 81, 20)],
            [(5, "started"), (16, "ended"), (81, "started")],
            Phase.ACTIVE,
            id="new-episode-after-cooldown",
        ),
        pytest.param(
            {},
            [*hold(0, 5, 10), *hold(6, 16, 3), *hold(17, 100, 3)],
            [(5, "started"), (16, "ended")],
            Phase.IDLE,
            id="cooldown-expires-to-idle",
        ),
        pytest.param(
            {"cooldown_s": 0},
            [*hold(0, 5, 10), *hold(6, 16, 3), *hold(17, 22, 20)],
            [(5, "started"), (16, "ended"), (22, "started")],
            Phase.ACTIVE,
            id="cooldown-zero",
        ),
        # Periodic updates at most every update_every_s (30 s) while the severity stays.
        pytest.param(
            {},
            hold(0, 100, 10),
            [(5, "started"), (35, "updated"), (65, "updated"), (95, "updated")],
            Phase.ACTIVE,
            id="periodic-updates",
        ),
        pytest.param(
            {},
            [*hold(0, 5, 10), (20, 10), (34.9, 10), (35.5, 10), (60, 10), (65.4, 10), (65.6, 10)],
            [(5, "started"), (35.5, "updated"), (65.6, "updated")],
            Phase.ACTIVE,
            id="periodic-updates-irregular-samples",
        ),
        pytest.param(
            {"clear_after_s": 60},
            [*hold(0, 5, 10), *hold(6, 34, 3), (35, 3)],
            [(5, "started"), (35, "updated")],
            Phase.CLEARING,
            id="periodic-update-while-clearing",
        ),
    ],
)
def test_transitions(
    changes: dict[str, Any], steps: list[Step], expected: list[tuple[float, str]], phase: Phase
) -> None:
    tr = tracker(**changes)
    assert kinds(feed(tr, steps)) == expected
    assert tr.phase is phase


def test_full_life_cycle_phase_by_phase() -> None:
    tr = tracker(cooldown_s=20)
    # (ts, count, phase after the sample, event type or None)
    script: list[tuple[float, float, Phase, EventType | None]] = [
        (0, 3, Phase.IDLE, None),
        (1, 12, Phase.PENDING, None),
        (3, 12, Phase.PENDING, None),
        (6, 12, Phase.ACTIVE, EventType.GATHERING_STARTED),
        (7, 8, Phase.ACTIVE, None),
        (8, 2, Phase.CLEARING, None),
        (12, 2, Phase.CLEARING, None),
        (13, 7, Phase.ACTIVE, None),
        (14, 1, Phase.CLEARING, None),
        (23, 1, Phase.CLEARING, None),
        (24, 1, Phase.COOLDOWN, EventType.GATHERING_ENDED),
        (30, 50, Phase.COOLDOWN, None),
        (43.9, 50, Phase.COOLDOWN, None),
        (44, 50, Phase.PENDING, None),
        (49, 50, Phase.ACTIVE, EventType.GATHERING_STARTED),
    ]
    for ts, count, phase, kind in script:
        events = tr.observe(sample(ts, count), MODEL)
        assert [e.type for e in events] == ([] if kind is None else [kind]), ts
        assert tr.phase is phase, ts


def test_severity_is_only_known_during_a_gathering() -> None:
    tr = tracker()
    seen = []
    for ts, count, *_ in [*hold(0, 5, 10), *hold(6, 16, 3)]:
        tr.observe(sample(ts, count), MODEL)
        seen.append((tr.phase, tr.severity))
    assert seen[0] == (Phase.PENDING, None)
    assert seen[5] == (Phase.ACTIVE, Severity.LOW)
    assert seen[6] == (Phase.CLEARING, Severity.LOW)
    assert seen[-1] == (Phase.COOLDOWN, None)


# -- episodes, ids and event contents ------------------------------------------------------------


def test_started_event_contents() -> None:
    tr = tracker()
    events = [e for ts, c in hold(0, 5, 12) for e in tr.observe(sample(ts, c, method="tiled"), MODEL)]
    assert len(events) == 1
    e = events[0]
    assert e.type is EventType.GATHERING_STARTED
    assert (e.camera_id, e.zone_id, e.location) == (CAM, ZONE, LOCATION)
    assert (e.ts, e.episode_start, e.seq) == (5, 5, 0)
    assert (e.count, e.peak, e.density_per_m2) == (12, 12, None)
    assert e.severity is Severity.LOW
    assert e.trigger == "count>=10"
    assert (e.method, e.model) == ("tiled", MODEL)
    assert e.rise_per_min == 0


def test_ids_are_deterministic_and_numbered_per_episode() -> None:
    steps = [*hold(0, 35, 10), *hold(36, 46, 3), *hold(47, 111, 20)]
    events = feed(tracker(), steps)
    assert kinds(events) == [(5, "started"), (35, "updated"), (46, "ended"), (111, "started")]
    assert [e.id for e in events] == [
        "cam-1:plaza:5000:0",
        "cam-1:plaza:5000:1",
        "cam-1:plaza:5000:2",
        "cam-1:plaza:111000:0",
    ]
    assert [e.episode_start for e in events] == [5, 5, 5, 111]
    assert events[0].episode_key == events[2].episode_key != events[3].episode_key
    # Feeding the same samples again gives the same ids: a re-sent event is the same event.
    assert [e.id for e in feed(tracker(), steps)] == [e.id for e in events]


def test_id_uses_episode_start_in_milliseconds() -> None:
    events = feed(tracker(min_duration_s=0), [(1700000000.25, 10), (1700000001.5, 10)])
    assert [e.id for e in events] == ["cam-1:plaza:1700000000250:0"]


def test_peak_is_tracked_within_an_episode_and_reset_for_the_next() -> None:
    steps = [*hold(0, 5, 10), (6, 25), *hold(7, 36, 12), *hold(37, 47, 2), *hold(48, 112, 11)]
    events = feed(tracker(), steps)
    assert kinds(events) == [(5, "started"), (6, "updated"), (36, "updated"), (47, "ended"), (112, "started")]
    assert [e.count for e in events] == [10, 25, 12, 2, 11]
    assert [e.peak for e in events] == [10, 25, 25, 25, 11]


# -- severity --------------------------------------------------------------------------------------


def test_severity_rise_is_reported_at_once_and_a_drop_at_the_next_periodic_update() -> None:
    tr = tracker()
    assert feed(tr, hold(0, 4, 10)) == []
    # (ts, count, events as (kind, severity))
    script: list[tuple[float, float, list[tuple[str, Severity]]]] = [
        (5, 10, [("started", Severity.LOW)]),
        (6, 10, []),
        (7, 15, [("updated", Severity.MEDIUM)]),  # a rise: at once, 2 s after the start
        (8, 16, []),
        (9, 20, [("updated", Severity.HIGH)]),
        (10, 15, []),  # a drop to medium: not yet
        (11, 20, []),  # back to the reported level: nothing new
        (12, 31, [("updated", Severity.CRITICAL)]),
        (13, 10, []),  # a drop to low: waits for the periodic update
        (41.9, 10, []),
        (42, 10, [("updated", Severity.LOW)]),  # 30 s after the last event (at 12)
        (43, 15, [("updated", Severity.MEDIUM)]),  # a rise again, at once
        (44, 15, []),
    ]
    for ts, count, expected in script:
        events = tr.observe(sample(ts, count), MODEL)
        assert [(e.type.value.removeprefix("crowd.gathering."), e.severity) for e in events] == expected, ts
    assert tr.severity is Severity.MEDIUM


def test_reported_severity_stays_until_the_drop_is_reported() -> None:
    tr = tracker()
    seen = []
    feed(tr, [*hold(0, 5, 10), (6, 31)])
    seen.append(tr.severity)
    feed(tr, hold(7, 35, 10))
    seen.append(tr.severity)
    assert kinds(feed(tr, [(36, 10)])) == [(36, "updated")]
    seen.append(tr.severity)
    assert seen == [Severity.CRITICAL, Severity.CRITICAL, Severity.LOW]


@pytest.mark.parametrize(
    ("count", "severity"),
    [
        (10, Severity.LOW),
        (15, Severity.MEDIUM),
        (20, Severity.HIGH),
        (30, Severity.CRITICAL),
        (45, Severity.CRITICAL),
    ],
)
def test_started_severity_from_count_bands(count: float, severity: Severity) -> None:
    events = feed(tracker(), hold(0, 5, count))
    assert [(e.type, e.severity) for e in events] == [(EventType.GATHERING_STARTED, severity)]


def test_custom_count_bands() -> None:
    events = feed(tracker(count_bands=SeverityBands(medium=11, high=12, critical=13)), hold(0, 5, 12))
    assert events[0].severity is Severity.HIGH


# -- density ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "expected", "trigger"),
    [
        pytest.param(
            hold(0, 5, 4, 2.5), [(5, "started")], "density>=2/m2", id="density-starts-below-enter-count"
        ),
        pytest.param(hold(0, 5, 4, 2.0), [(5, "started")], "density>=2/m2", id="exactly-enter-density"),
        pytest.param(hold(0, 30, 4, 1.9), [], None, id="density-and-count-below"),
        pytest.param(hold(0, 5, 12, 0.5), [(5, "started")], "count>=10", id="count-starts-with-low-density"),
        pytest.param(
            [*hold(0, 2, 4, 2.5), (3, 4, 1.0), *hold(4, 8, 4, 2.5)],
            [],
            None,
            id="density-drop-resets-pending",
        ),
        pytest.param(
            [*hold(0, 5, 4, 2.5), *hold(6, 40, 4, 1.5)],
            [(5, "started"), (35, "updated")],
            "density>=2/m2",
            id="density-above-exit-keeps-active-with-a-low-count",
        ),
        pytest.param(
            [*hold(0, 5, 12, 0.5), *hold(6, 40, 8, 0.5)],
            [(5, "started"), (35, "updated")],
            "count>=10",
            id="count-above-exit-keeps-active-with-a-low-density",
        ),
        pytest.param(
            [*hold(0, 5, 4, 2.5), *hold(6, 16, 4, 1.0)],
            [(5, "started"), (16, "ended")],
            "density>=2/m2",
            id="both-below-exit-ends",
        ),
    ],
)
def test_density_trigger(steps: list[Step], expected: list[tuple[float, str]], trigger: str | None) -> None:
    events = feed(tracker(enter_density=2.0, exit_density=1.4), steps)
    assert kinds(events) == expected
    assert all(e.trigger == trigger for e in events)


def test_density_gathering_with_default_exit_density_does_not_flap() -> None:
    # enter_density without exit_density: exit_density defaults to 0.7 x enter_density, so a
    # gathering that entered on density (count 4, below exit_count 6) is not ended while the
    # density stays above it.
    r = rules(enter_density=2.0)
    assert r.exit_density == pytest.approx(1.4)
    tr = GatheringTracker(ZoneIdentity(CAM, ZONE, LOCATION), r)
    events = feed(tr, hold(0, 100, 4, 2.5))
    assert kinds(events) == [(5, "started"), (35, "updated"), (65, "updated"), (95, "updated")]
    assert tr.phase is Phase.ACTIVE


def test_density_ignored_when_not_measured() -> None:
    # A zone without calibration sends density None: count rules apply, density ones do not.
    events = feed(tracker(enter_density=2.0), [*hold(0, 5, 10), *hold(6, 16, 4)])
    assert kinds(events) == [(5, "started"), (16, "ended")]
    assert events[0].trigger == "count>=10"


@pytest.mark.parametrize(
    ("changes", "count", "density", "severity"),
    [
        ({"enter_density": 2.0}, 4, 2.5, Severity.LOW),
        ({"enter_density": 2.0}, 4, 3.5, Severity.MEDIUM),
        ({"enter_density": 2.0}, 4, 5.0, Severity.HIGH),
        ({"enter_density": 2.0}, 4, 7.2, Severity.CRITICAL),
        # A density, when known, decides severity even if the count bands say otherwise.
        ({"enter_density": 2.0}, 100, 2.5, Severity.LOW),
        ({}, 10, 6.0, Severity.HIGH),
        ({}, 10, None, Severity.LOW),
    ],
)
def test_severity_from_density_uses_fruin_bands(
    changes: dict[str, Any], count: float, density: float | None, severity: Severity
) -> None:
    events = feed(tracker(**changes), hold(0, 5, count, density))
    assert len(events) == 1
    assert events[0].severity is severity
    assert events[0].density_per_m2 == density


def test_density_severity_rise_updates_at_once() -> None:
    tr = tracker(enter_density=2.0)
    events = feed(tr, [*hold(0, 5, 4, 2.5), (6, 8, 3.6), (7, 12, 5.1), (8, 12, 7.0), (9, 12, 6.0)])
    assert [(e.ts, e.severity) for e in events] == [
        (5, Severity.LOW),
        (6, Severity.MEDIUM),
        (7, Severity.HIGH),
        (8, Severity.CRITICAL),
    ]
    assert events[-1].density_per_m2 == 7.0


# -- rise rule ---------------------------------------------------------------------------------------


def ramp(t0: float, t1: float, per_s: float, start: float = 0.0) -> list[Step]:
    return [(float(t), start + per_s * (t - t0)) for t in range(int(t0), int(t1) + 1)]


RISE = "rise>=20/min"


@pytest.mark.parametrize(
    ("changes", "steps", "expected", "trigger"),
    [
        # 30/min, but only 14 s of history (less than half of the 30 s window).
        pytest.param({}, ramp(0, 14, 0.5), [], None, id="baseline-shorter-than-half-window"),
        pytest.param({}, ramp(0, 20, 0.5), [(15, "started")], RISE, id="fires-early-below-enter-count"),
        # 540/min over 1 s: a jump, not yet a trend.
        pytest.param({}, [(0, 0), *hold(1, 14, 9)], [], None, id="jump-with-short-baseline-does-not-fire"),
        pytest.param(
            {}, [(0, 0), *hold(1, 15, 9)], [(15, "started")], RISE, id="fires-once-baseline-is-long"
        ),
        pytest.param(
            {},
            [(0, 0), *hold(1, 15, 10)],
            [(15, "started")],
            RISE,
            id="fires-from-pending-before-min-duration",
        ),
        pytest.param({"rise_per_min": 10}, [(0, 0), *hold(1, 60, 5.9)], [], None, id="below-exit-count"),
        pytest.param(
            {"rise_per_min": 10},
            [(0, 0), *hold(1, 15, 6)],
            [(15, "started")],
            "rise>=10/min",
            id="exactly-exit-count",
        ),
        # 12/min: reaches enter_count at 50 and waits min_duration (60 s) like any count.
        pytest.param(
            {}, [*ramp(0, 50, 0.2), *hold(51, 110, 10)], [(110, "started")], "count>=10", id="slow-rise-waits"
        ),
        pytest.param({"rise_per_min": None}, ramp(0, 40, 2.0), [], None, id="no-rise-rule"),
        # The rate is over the last rise_window_s, not since the first sample: 60/min after
        # 100 quiet seconds reaches 20/min over the window at 110.
        pytest.param(
            {},
            [*hold(0, 100, 0), *ramp(101, 110, 1.0, start=1)],
            [(110, "started")],
            RISE,
            id="rate-over-window",
        ),
    ],
)
def test_rise_rule(
    changes: dict[str, Any], steps: list[Step], expected: list[tuple[float, str]], trigger: str | None
) -> None:
    tr = tracker(**({"min_duration_s": 60, "rise_per_min": 20, "rise_window_s": 30} | changes))
    events = feed(tr, steps)
    assert kinds(events) == expected
    assert [e.trigger for e in events] == [trigger] * len(expected)


def test_rise_event_carries_rate_and_trigger() -> None:
    tr = tracker(min_duration_s=60, rise_per_min=20, rise_window_s=30)
    events = feed(tr, ramp(0, 15, 0.5))
    assert len(events) == 1
    e = events[0]
    assert e.trigger == "rise>=20/min"
    assert (e.count, e.rise_per_min) == (7.5, 30.0)
    assert e.seq == 0


def test_rise_rule_is_blocked_by_cooldown() -> None:
    tr = tracker(min_duration_s=0, rise_per_min=20, rise_window_s=30, cooldown_s=60)
    assert kinds(feed(tr, [(0, 10), *hold(1, 11, 0)])) == [(0, "started"), (11, "ended")]
    # A steep rise inside the cooldown (ends at 71) does not start anything.
    assert feed(tr, ramp(12, 70, 1.0)) == []
    assert tr.phase is Phase.COOLDOWN


# -- rules validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"exit_count": 10}, "exit_count must be below enter_count"),
        ({"exit_count": 12}, "exit_count must be below enter_count"),
        ({"enter_density": 2.0, "exit_density": 2.0}, "exit_density must be below enter_density"),
        # `count < exit_count` never holds at 0: the gathering would never end.
        ({"exit_count": 0}, "exit_count must be above 0, got 0"),
        ({"exit_count": -1}, "exit_count must be above 0, got -1"),
        ({"enter_density": 2.0, "exit_density": 0.0}, "exit_density must be above 0, got 0.0"),
    ],
)
def test_rules_need_hysteresis(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rules(**changes)


def test_rules_defaults() -> None:
    r = rules()
    assert r.count_bands == SeverityBands(medium=15, high=20, critical=30)
    assert r.exit_density is None
    assert r.severity(15, None) is Severity.MEDIUM
    assert r.severity(100, 3.5) is Severity.MEDIUM


@pytest.mark.parametrize(
    ("step_s", "start_mono"),
    [
        (-3600.0, 5.0),  # the wall clock stepped back an hour (NTP): the wait is not an hour longer
        (+3600.0, 5.0),  # stepped forward: min_duration is not skipped
        (0.0, 5.0),
    ],
)
def test_intervals_run_on_the_clock_given_not_on_the_stamps(step_s: float, start_mono: float) -> None:
    tr = tracker()
    wall0, events = 1_800_000_000.0, []
    for i in range(12):  # 12 monotonic seconds of 12 people; the wall clock steps at i = 2
        wall = wall0 + i + (step_s if i >= 2 else 0.0)
        for event in tr.observe(sample(wall, 12.0), MODEL, now=float(i)):
            events.append((i, event))
    (i, started), *rest = events
    assert (i, started.type) == (start_mono, EventType.GATHERING_STARTED)
    assert started.ts == wall0 + i + (step_s if i >= 2 else 0.0)  # stamped with the wall clock
    assert rest == []  # nor does the step bring an update forward

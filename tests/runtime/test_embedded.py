"""Embedded mode wiring: frames -> counts -> events -> routed alerts -> events log, drained on stop."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from crowdwatch.bus.base import CROWD_EVENTS
from crowdwatch.config.root import parse_config
from crowdwatch.core.analysis import ZoneState
from crowdwatch.core.crowd import Phase
from crowdwatch.runtime.embedded import EmbeddedApp
from crowdwatch.runtime.live import LiveState

from .fakes import CountingDetector, ScriptedSource, scripted_factory

SQUARE = [[0, 0], [400, 0], [400, 200], [0, 200]]


def box(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def config(**rules: Any) -> dict[str, Any]:
    return {
        "cameras": [
            {
                "id": "cam-a",
                "url": "a.mp4",
                "location": {"lat": 30.015, "lon": 120.02},
                "zones": [{"id": "z", "polygon": SQUARE, "method": "detector"}],
            },
        ],
        "rules": {
            "enter_count": 5,
            "exit_count": 3,
            "min_duration_s": 2,
            "clear_after_s": 2,
            "update_every_s": 100,
            "cooldown_s": 0,
            "enter_density": None,
            "smoothing": {"method": "none"},
        }
        | rules,
        "centers": [
            {
                "id": "dist",
                "name": "District",
                "level": "district",
                "boundary": {"type": "Polygon", "coordinates": [box(120.0, 30.0, 120.1, 30.1)]},
            },
            {
                "id": "south",
                "name": "South",
                "level": "street",
                "parent": "dist",
                "boundary": {"type": "Polygon", "coordinates": [box(120.0, 30.0, 120.05, 30.03)]},
            },
        ],
        "metrics": {"enabled": False},
    }


COUNTS = [0, 1, 6, 6, 6, 6, 6, 1, 1, 1, 1, 0]


def run(tmp_path: Path, detector: CountingDetector, registry: CollectorRegistry | None = None) -> EmbeddedApp:
    sources = {"cam-a": ScriptedSource("cam-a", len(COUNTS))}
    app = EmbeddedApp(
        parse_config(config()),
        events_out=tmp_path / "events.jsonl",
        detector=detector,
        source_factory=scripted_factory(sources),
        registry=registry,
    )
    with app:
        app.run(duration=60)
    return app


def test_gathering_becomes_one_routed_alert_and_is_logged(tmp_path: Path) -> None:
    detector = CountingDetector(COUNTS)
    app = run(tmp_path, detector)

    alerts = app.store.list_alerts(open_only=False)
    assert len(alerts) == 1
    alert = alerts[0]
    assert (alert.center_id, alert.route_reason) == ("south", "inside:street")
    assert alert.peak == 6
    assert alert.gathering_ended
    assert detector.closed

    records = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    types = [r["event"]["type"] for r in records if r["record"] == "event"]
    assert types == ["crowd.gathering.started", "crowd.gathering.ended"]
    changes = [r["change"] for r in records if r["record"] == "alert"]
    assert changes == ["created", "updated"]
    started = next(r["event"] for r in records if r["record"] == "event")
    # Started at frame 4: 6 people since frame 2, held min_duration 2 s.
    assert started["data"]["count"] == 6
    assert started["time"].startswith("2027-01-15T08:00:04")
    assert started["data"]["model"] == "fake-detector"


def test_live_state_and_metrics_follow_the_frames(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    app = run(tmp_path, CountingDetector(COUNTS), registry)
    (camera,) = app.live.cameras()
    assert camera.status == "ended"
    assert camera.analysed == len(COUNTS)
    (zone,) = app.live.zones()
    assert zone.count == COUNTS[-1]
    assert registry.get_sample_value("crowdwatch_frames_analysed_total", {"camera": "cam-a"}) == len(COUNTS)
    assert (
        registry.get_sample_value(
            "crowdwatch_events_total", {"camera": "cam-a", "type": "crowd.gathering.started"}
        )
        == 1
    )


def test_a_frame_that_breaks_the_model_is_skipped_and_counted(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    app = run(tmp_path, CountingDetector(COUNTS, fail_on={3}), registry)
    assert registry.get_sample_value("crowdwatch_frame_errors_total", {"camera": "cam-a"}) == 1
    (camera,) = app.live.cameras()
    assert camera.analysed == len(COUNTS) - 1
    # Frames 2, 4, 5, 6 still hold 6 people for 2 s or more: the gathering is still found.
    assert len(app.store.list_alerts(open_only=False)) == 1


def test_the_events_log_goes_on_past_a_message_that_is_not_an_event(tmp_path: Path) -> None:
    """Garbage on the topic (another producer, a corrupted record; the alerting role
    dead-letters it) once killed the events-log thread: nothing more was logged."""
    app = EmbeddedApp(
        parse_config(config()),
        events_out=tmp_path / "events.jsonl",
        detector=CountingDetector(COUNTS),
        source_factory=scripted_factory({"cam-a": ScriptedSource("cam-a", len(COUNTS))}),
        registry=CollectorRegistry(),
    )
    app.bus.publish(CROWD_EVENTS, "cam-a", b"\xffnot json")
    out = tmp_path / "events.jsonl"
    with app:
        app.run(duration=60)
        # Logged while running (the log thread polls every 0.2 s), not only by the drain at stop.
        deadline = time.monotonic() + 10.0
        while out.read_text().count('"record":"event"') < 2 and time.monotonic() < deadline:
            threading.Event().wait(0.05)
        assert out.read_text().count('"record":"event"') == 2
    records = [json.loads(line) for line in out.read_text().splitlines()]
    types = [r["event"]["type"] for r in records if r["record"] == "event"]
    assert types == ["crowd.gathering.started", "crowd.gathering.ended"]


def test_zones_of_a_camera_removed_meanwhile_do_not_come_back() -> None:
    """A frame finishing after its camera was removed (a slow detection) re-added its rows."""
    live = LiveState()
    live.add_camera("cam-a", "A")
    state = ZoneState("cam-a", "z", 3.0, 3.0, None, "detector", Phase.IDLE, 0.0)
    live.update_zones((state,))
    live.remove_camera("cam-a")
    live.update_zones((state,))
    assert live.zones() == []

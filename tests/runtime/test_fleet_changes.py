"""Changing a worker's cameras when a new camera cannot start (its model is not fetched here):
the cameras it gave up stop anyway (they may run on another worker now), and the assignment is
applied again later instead of being taken as done."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from crowdwatch.bus.memory import MemoryBus
from crowdwatch.config.camera import CameraConfig
from crowdwatch.config.root import AppConfig, parse_config
from crowdwatch.core.types import CameraStatusEvent, EventType, GeoPoint
from crowdwatch.detectors.catalog import ModelNotFetchedError
from crowdwatch.runtime.assignment import KafkaCameraAssignment
from crowdwatch.runtime.fleet import CameraFleet
from crowdwatch.runtime.live import LiveState
from crowdwatch.runtime.metrics import WorkerMetrics
from crowdwatch.runtime.models import ModelSet
from crowdwatch.runtime.publisher import EventPublisher

from .fakes import CountingDetector, ScriptedSource

SQUARE = [[0, 0], [400, 0], [400, 200], [0, 200]]
DISTRICT = [[120.0, 30.0], [120.1, 30.0], [120.1, 30.1], [120.0, 30.1], [120.0, 30.0]]


def camera(camera_id: str, method: str) -> dict[str, Any]:
    return {
        "id": camera_id,
        "url": f"{camera_id}.mp4",
        "location": {"lat": 30.015, "lon": 120.02},
        "zones": [{"id": "z", "polygon": SQUARE, "method": method}],
    }


@pytest.fixture
def config() -> AppConfig:
    return parse_config(
        {
            # 'b' counts by density, whose model is not fetched in these tests.
            "cameras": [camera("a", "detector"), camera("b", "density")],
            "centers": [
                {
                    "id": "d",
                    "name": "D",
                    "level": "district",
                    "boundary": {"type": "Polygon", "coordinates": [DISTRICT]},
                }
            ],
            "bus": {"type": "kafka", "bootstrap_servers": ["127.0.0.1:9"]},
            "metrics": {"enabled": False},
        }
    )


def fleet_of(config: AppConfig, tmp_path: Path, metrics: WorkerMetrics | None = None) -> CameraFleet:
    models = ModelSet(
        config.detector, config.counting, tmp_path / "no-models", detector=CountingDetector([0] * 100)
    )
    return CameraFleet(
        config,
        models,
        EventPublisher(MemoryBus()),
        LiveState(),
        metrics or WorkerMetrics(CollectorRegistry()),
        source_factory=lambda c, status: ScriptedSource(c.id, 5),
    )


def test_cameras_given_up_stop_even_when_a_new_one_cannot_start(config: AppConfig, tmp_path: Path) -> None:
    cams = {c.id: c for c in config.cameras}
    fleet = fleet_of(config, tmp_path)
    try:
        fleet.set_cameras([cams["a"]])
        assert fleet.camera_ids == ["a"]
        with pytest.raises(ModelNotFetchedError):
            fleet.set_cameras([cams["b"]])  # 'a' moved away, 'b' came: no density model here
        assert fleet.camera_ids == []
    finally:
        fleet.stop()


class FailingOnce:
    """A fleet whose first change fails (a model missing, fetched meanwhile)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def set_cameras(self, cameras: Iterable[CameraConfig]) -> None:
        self.calls.append(sorted(c.id for c in cameras))
        if len(self.calls) == 1:
            raise ModelNotFetchedError("csrnet-density is not fetched")


def test_a_failed_assignment_is_applied_again(config: AppConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = FailingOnce()
    assignment = KafkaCameraAssignment(config, fleet, registry=CollectorRegistry())
    clock = [1000.0]
    monkeypatch.setattr("crowdwatch.runtime.assignment.time.monotonic", lambda: clock[0])
    wanted = {c.id: c for c in config.cameras}
    assignment._apply(wanted)
    assert assignment.retry_due(clock[0]) is False
    clock[0] += 31.0
    assert assignment.retry_due(clock[0]) is True
    assignment._apply(wanted)  # the same assignment: once it would have been taken as done
    assert fleet.calls == [["a", "b"], ["a", "b"]]
    assert assignment.retry_due(clock[0] + 1000) is False  # it worked: nothing more to retry
    assignment._apply(wanted)
    assert len(fleet.calls) == 2


class RecordingFleet:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def set_cameras(self, cameras: Iterable[CameraConfig]) -> None:
        self.calls.append(sorted(c.id for c in cameras))


def test_cameras_keep_running_while_kafka_is_unreachable(
    config: AppConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """Stopping them would blind every camera for the whole outage (Kafka down for all) and lose
    what the bus's spool exists to keep. (The config's broker, 127.0.0.1:9, refuses.)"""
    fleet = RecordingFleet()
    assignment = KafkaCameraAssignment(
        config,
        fleet,
        registry=CollectorRegistry(),
        session_timeout_ms=300,
        heartbeat_interval_ms=100,
        retry_backoff_s=0.05,
    )
    assignment._apply({c.id: c for c in config.cameras})  # what the last assignment said
    caplog.set_level(logging.WARNING, logger="crowdwatch.runtime.assignment")
    assignment.start()
    try:
        deadline = time.monotonic() + 20.0
        while "keep running" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)  # polling the log for the warning, with a deadline
        assert "the 2 camera(s) here keep running" in caplog.text
    finally:
        assignment.stop()
    assert fleet.calls == [["a", "b"]]  # never told to stop them
    assert assignment.camera_ids == ["a", "b"]


def test_a_camera_that_stops_here_leaves_no_zone_gauge(config: AppConfig, tmp_path: Path) -> None:
    """Its last count stayed on this worker's metrics for ever (and two workers reported it)."""
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    fleet = fleet_of(config, tmp_path, metrics)
    cams = {c.id: c for c in config.cameras}
    try:
        fleet.set_cameras([cams["a"]])
        metrics.zone_count.labels(camera="a", zone="z").set(7.0)  # as a processed frame does
        fleet.set_cameras([])
        assert registry.get_sample_value("crowdwatch_zone_people", {"camera": "a", "zone": "z"}) is None
    finally:
        fleet.stop()


def test_the_live_view_sees_a_degraded_spell_end(config: AppConfig, tmp_path: Path) -> None:
    """A degraded spell ends without an event; the view kept saying 'degraded' for ever."""
    live = LiveState()
    fleet = CameraFleet(
        config,
        ModelSet(config.detector, config.counting, tmp_path, detector=CountingDetector([0] * 10)),
        EventPublisher(MemoryBus()),
        live,
        WorkerMetrics(CollectorRegistry()),
        source_factory=lambda c, status: ScriptedSource(c.id, 5),  # online, not degraded
    )
    cams = {c.id: c for c in config.cameras}
    try:
        fleet.set_cameras([cams["a"]])
        degraded = CameraStatusEvent(
            EventType.CAMERA_DEGRADED, "a", 0.0, "12 of the last 20 reads failed", GeoPoint(30.0, 120.0)
        )
        live.camera_status(degraded)
        assert live.status_of("a") == "degraded"
        fleet.refresh_live()
        assert live.status_of("a") == "online"
    finally:
        fleet.stop()


def test_a_dead_camera_shows_in_the_metrics(config: AppConfig, tmp_path: Path) -> None:
    """Camera status was only in the terminal table: the dashboard could not show a dead one."""
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    fleet = fleet_of(config, tmp_path, metrics)
    cams = {c.id: c for c in config.cameras}

    def online() -> float | None:
        return registry.get_sample_value("crowdwatch_camera_online", {"camera": "a"})

    try:
        fleet.set_cameras([cams["a"]])
        worker = fleet.workers()[0]
        worker.process(fleet.source("a").read(1.0))  # type: ignore[arg-type]  # a frame analysed
        assert online() == 1.0
        where = GeoPoint(30.0, 120.0)
        fleet._on_status(CameraStatusEvent(EventType.CAMERA_OFFLINE, "a", 0.0, "no frame for 10 s", where))
        assert online() == 0.0
        fleet._on_status(CameraStatusEvent(EventType.CAMERA_ONLINE, "a", 1.0, "frames again", where))
        assert online() == 1.0
        fleet.set_cameras([])
        assert online() is None  # not reported by a worker that no longer runs it
    finally:
        fleet.stop()

"""Prometheus metrics of the worker role, on a registry passed in (never the global one)."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from crowdwatch.core.analysis import AnalysisResult


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.frames = Counter(
            "crowdwatch_frames_analysed_total",
            "Frames run through the detector.",
            ["camera"],
            registry=registry,
        )
        self.detect_seconds = Histogram(
            "crowdwatch_detect_seconds",
            "Detector latency per frame.",
            ["camera"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2),
            registry=registry,
        )
        self.detect_batch_size = Histogram(
            "crowdwatch_detect_batch_size",
            "Frames per batched inference (detector batch_size > 1 only).",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=registry,
        )
        self.zone_count = Gauge(
            "crowdwatch_zone_people",
            "Smoothed people count per zone.",
            ["camera", "zone"],
            registry=registry,
        )
        self.events = Counter(
            "crowdwatch_events_total",
            "Gathering events emitted.",
            ["camera", "type"],
            registry=registry,
        )
        self.camera_online = Gauge(
            "crowdwatch_camera_online",
            "1 once the camera's frames are analysed, 0 while it is reported offline "
            "(camera.offline); alert on `== 0` to see a dead camera.",
            ["camera"],
            registry=registry,
        )
        self.errors = Counter(
            "crowdwatch_frame_errors_total",
            "Frames that failed in detection or counting.",
            ["camera"],
            registry=registry,
        )

    def observe(self, camera: str, detect_s: float, result: AnalysisResult) -> None:
        self.frames.labels(camera=camera).inc()
        self.camera_online.labels(camera=camera).set(1)
        self.detect_seconds.labels(camera=camera).observe(detect_s)
        for zc in result.counts:
            self.zone_count.labels(camera=camera, zone=zc.zone_id).set(zc.count)
        for ev in result.events:
            self.events.labels(camera=camera, type=ev.type.value).inc()

    def camera_status(self, camera: str, online: bool) -> None:
        self.camera_online.labels(camera=camera).set(1 if online else 0)

    def forget_camera(self, camera: str, zones: list[str]) -> None:
        """Drop the camera's gauges once it stops here (moved to another worker, removed): a
        stale last count or status would be reported for ever, and by two workers at once."""
        for zone in zones:
            with contextlib.suppress(KeyError):  # never observed
                self.zone_count.remove(camera, zone)
        with contextlib.suppress(KeyError):
            self.camera_online.remove(camera)

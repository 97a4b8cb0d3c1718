"""Embedded mode: every role in one process over the in-memory bus and store (DESIGN 1).

Threads: one per camera (decode is a further thread inside each source), one for the
alerting service, one for the events log. The main thread only watches and stops them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from crowdwatch.alerting.metrics import AlertingMetrics
from crowdwatch.alerting.router import build_router
from crowdwatch.alerting.service import AlertingService
from crowdwatch.bus.base import CAMERA_STATUS, CROWD_EVENTS, Consumer, Message
from crowdwatch.bus.memory import MemoryBus
from crowdwatch.config.camera import CameraConfig
from crowdwatch.config.root import AppConfig
from crowdwatch.core.alerts import AlertChange
from crowdwatch.core.analysis import AnalysisResult, FrameInputs
from crowdwatch.core.types import CameraStatusEvent, Frame
from crowdwatch.detectors.base import Detector
from crowdwatch.detectors.density import DensityEstimator
from crowdwatch.ingest.base import Source, StatusCallback
from crowdwatch.ingest.opencv import OpenCVSource
from crowdwatch.runtime.build import camera_analysis
from crowdwatch.runtime.events_log import EventsLog
from crowdwatch.runtime.live import LiveState
from crowdwatch.runtime.metrics import WorkerMetrics
from crowdwatch.runtime.models import ModelSet
from crowdwatch.runtime.publisher import EventPublisher
from crowdwatch.runtime.worker import CameraWorker
from crowdwatch.store.base import StoreUpdate
from crowdwatch.store.memory import MemoryAlertStore

log = logging.getLogger(__name__)

SourceFactory = Callable[[CameraConfig, StatusCallback], Source]
EVENTS_LOG_GROUP = "crowdwatch-events-log"


def _opencv_source(camera: CameraConfig, on_status: StatusCallback) -> Source:
    return OpenCVSource(camera, on_status)


class EmbeddedApp:
    def __init__(
        self,
        config: AppConfig,
        *,
        registry: CollectorRegistry | None = None,
        events_out: Path | None = None,
        clock: Callable[[], float] = time.time,
        detector: Detector | None = None,
        density: DensityEstimator | None = None,
        models_dir: Path | None = None,
        source_factory: SourceFactory = _opencv_source,
    ) -> None:
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self.bus = MemoryBus()
        self.store = MemoryAlertStore()
        self.live = LiveState()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.alerting = AlertingService(
            self.bus,
            self.store,
            build_router(config),
            clock,
            metrics=AlertingMetrics.create(self.registry),
            on_error=lambda exc, msg: log.error("alerting: %s (message %s)", exc, _where(msg)),
        )
        self._events_log = EventsLog(events_out) if events_out is not None else None
        self._log_consumer: Consumer | None = None
        if self._events_log is not None:
            self._log_consumer = self.bus.consumer([CROWD_EVENTS, CAMERA_STATUS], EVENTS_LOG_GROUP)
            self.store.subscribe(self._on_store_update)

        publisher = EventPublisher(self.bus)
        self.models = ModelSet(
            config.detector, config.counting, models_dir, detector=detector, density=density
        )
        metrics = WorkerMetrics(self.registry)
        self.workers: list[CameraWorker] = []
        self.sources: dict[str, Source] = {}
        for cam in config.cameras:
            if not cam.enabled:
                continue
            self.live.add_camera(cam.id, cam.name)
            source = source_factory(cam, self._status_callback(publisher))
            self.sources[cam.id] = source
            self.workers.append(
                CameraWorker(
                    source,
                    self.models,
                    camera_analysis(cam, config.rules, config.counting),
                    publisher.crowd,
                    on_result=self._on_result,
                    metrics=metrics,
                )
            )
        self.models.load(
            detector=any(w.needs_detector for w in self.workers),
            density=any(w.may_need_density for w in self.workers),
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._spawn("alerting", self._alerting_loop)
        if self._log_consumer is not None:
            self._spawn("events-log", self._events_log_loop)
        for worker in self.workers:
            worker.start()

    def run(self, duration: float | None = None, stop: threading.Event | None = None) -> None:
        """Until `duration` seconds passed, `stop` is set, or every source has ended."""
        deadline = None if duration is None else time.monotonic() + duration
        stop = stop if stop is not None else threading.Event()
        while not stop.is_set():
            self.refresh_live()
            if all(w.finished.is_set() for w in self.workers):
                log.info("every source has ended")
                return
            if deadline is not None and time.monotonic() >= deadline:
                return
            stop.wait(0.25)

    def stop(self) -> None:
        """Stop cameras, then let alerting and the events log finish what was published."""
        for worker in self.workers:
            worker.stop()
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
        while self.alerting.run_once(0.0) > 0:
            pass
        self.alerting.tick()
        if self._log_consumer is not None:
            self._drain_events_log(0.0)
            self._log_consumer.close()
        self.alerting.close()
        self.store.close()
        self.models.close()
        self.refresh_live()
        if self._events_log is not None:
            self._events_log.close()
        self.bus.close()

    def __enter__(self) -> EmbeddedApp:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- views ---------------------------------------------------------------------------

    def refresh_live(self) -> None:
        for worker in self.workers:
            source = self.sources[worker.camera_id]
            src = source.stats()
            ws = worker.stats()
            changes: dict[str, object] = {
                "decode_fps": src.fps,
                "analysed": ws.frames_analysed,
                "stale_dropped": src.frames_dropped_stale,
                "decode_errors": src.decode_errors,
                "detect_ms": ws.detect_ms_avg,
            }
            if worker.finished.is_set() and source.ended:
                changes["status"] = "ended"
            elif src.online and self._camera_status(worker.camera_id) in ("starting", "offline"):
                changes["status"] = "online"
                changes["reason"] = ""
            self.live.update_camera(worker.camera_id, **changes)

    def center_names(self) -> dict[str, str]:
        return {c.id: c.name for c in self.config.centers}

    # -- internals -------------------------------------------------------------------------

    def _camera_status(self, camera_id: str) -> str:
        for view in self.live.cameras():
            if view.camera_id == camera_id:
                return view.status
        return ""

    def _status_callback(self, publisher: EventPublisher) -> StatusCallback:
        def on_status(event: CameraStatusEvent) -> None:
            log.warning("camera %s: %s %s", event.camera_id, event.type.value, event.reason)
            self.live.camera_status(event)
            publisher.camera(event)

        return on_status

    def _on_result(self, frame: Frame, inputs: FrameInputs, result: AnalysisResult) -> None:
        self.live.update_zones(result.states)

    def _on_store_update(self, update: StoreUpdate) -> None:
        if self._events_log is not None and isinstance(update, AlertChange):
            self._events_log.alert_change(update)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _alerting_loop(self) -> None:
        while not self._stop.is_set():
            self.alerting.run_once(0.2)
            self.alerting.tick()

    def _events_log_loop(self) -> None:
        while not self._stop.is_set():
            self._drain_events_log(0.2)

    def _drain_events_log(self, timeout: float) -> None:
        assert self._log_consumer is not None
        assert self._events_log is not None
        while True:
            batch = self._log_consumer.poll(timeout)
            if not batch:
                return
            for msg in batch:
                self._events_log.message(msg)
            self._log_consumer.commit(batch)
            timeout = 0.0


def _where(msg: Message | None) -> str:
    return "-" if msg is None else f"{msg.topic}[{msg.partition}]@{msg.offset}"

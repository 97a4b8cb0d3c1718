"""The cameras one worker process runs. The set can change while running: statically from the
config, or as Kafka's group assignment hands cameras to this worker and takes them away."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from crowdwatch.config.camera import CameraConfig
from crowdwatch.config.root import AppConfig
from crowdwatch.core.types import CameraStatusEvent, EventType
from crowdwatch.ingest.base import Source, StatusCallback
from crowdwatch.ingest.opencv import OpenCVSource
from crowdwatch.runtime.build import camera_analysis
from crowdwatch.runtime.live import LiveState
from crowdwatch.runtime.metrics import WorkerMetrics
from crowdwatch.runtime.models import ModelSet
from crowdwatch.runtime.publisher import EventPublisher
from crowdwatch.runtime.worker import CameraWorker, ResultSink

log = logging.getLogger(__name__)

SourceFactory = Callable[[CameraConfig, StatusCallback], Source]


def opencv_source(camera: CameraConfig, on_status: StatusCallback) -> Source:
    return OpenCVSource(camera, on_status)


class CameraFleet:
    def __init__(
        self,
        config: AppConfig,
        models: ModelSet,
        publisher: EventPublisher,
        live: LiveState,
        metrics: WorkerMetrics,
        *,
        source_factory: SourceFactory = opencv_source,
    ) -> None:
        self._config = config
        self._models = models
        self._publisher = publisher
        self._live = live
        self._metrics = metrics
        self._source_factory = source_factory
        self._lock = threading.Lock()
        self._workers: dict[str, CameraWorker] = {}
        self._sources: dict[str, Source] = {}
        self._started = False

    @staticmethod
    def needs(cameras: Iterable[CameraConfig], config: AppConfig) -> tuple[bool, bool]:
        """(detector, density): which models these cameras' zones may use."""
        analyses = [camera_analysis(c, config.rules, config.counting) for c in cameras]
        detector = any(a.needs_detector or a.tiled_zones() for a in analyses)
        return detector, any(a.may_need_density for a in analyses)

    def set_cameras(self, cameras: Iterable[CameraConfig]) -> None:
        """Run exactly these cameras: start the new ones, stop the ones no longer listed, and
        restart a camera whose definition changed."""
        wanted = {c.id: c for c in cameras if c.enabled}
        # The ones no longer listed stop first, whatever happens next: they may run elsewhere
        # now, and must not run twice.
        with self._lock:
            for camera_id in [cid for cid in self._workers if cid not in wanted]:
                self._stop_one(camera_id)
        # Cameras assigned at run time may use a model this worker has not loaded yet (raises
        # when it cannot: then none of the new or changed cameras start).
        detector, density = self.needs(wanted.values(), self._config)
        self._models.load(detector=detector, density=density)
        with self._lock:
            for camera_id, cam in wanted.items():
                current = self._workers.get(camera_id)
                if current is not None and current.camera == cam:
                    continue
                if current is not None:
                    self._stop_one(camera_id)
                self._start_one(cam)

    @property
    def camera_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._workers)

    def workers(self) -> list[CameraWorker]:
        with self._lock:
            return list(self._workers.values())

    def source(self, camera_id: str) -> Source:
        with self._lock:
            return self._sources[camera_id]

    def start(self) -> None:
        with self._lock:
            self._started = True
            for worker in self._workers.values():
                worker.start()

    def stop(self) -> None:
        with self._lock:
            for camera_id in list(self._workers):
                self._stop_one(camera_id, forget=False)  # keep them on screen for the summary
            self._started = False

    def all_finished(self) -> bool:
        with self._lock:
            return bool(self._workers) and all(w.finished.is_set() for w in self._workers.values())

    def refresh_live(self) -> None:
        for worker in self.workers():
            source = self.source(worker.camera_id)
            src, ws = source.stats(), worker.stats()
            changes: dict[str, object] = {
                "decode_fps": src.fps,
                "analysed": ws.frames_analysed,
                "stale_dropped": src.frames_dropped_stale,
                "decode_errors": src.decode_errors,
                "detect_ms": ws.detect_ms_avg,
            }
            status = self._live.status_of(worker.camera_id)
            if worker.finished.is_set() and source.ended:
                changes["status"] = "ended"
            elif src.online and (
                status in ("starting", "offline") or (status == "degraded" and not src.degraded)
            ):
                # A degraded spell ends without an event: the view must see it end too.
                changes |= {"status": "online", "reason": ""}
            self._live.update_camera(worker.camera_id, **changes)

    # -- internals (lock held) ---------------------------------------------------------------

    def _start_one(self, cam: CameraConfig) -> None:
        self._live.add_camera(cam.id, cam.name)
        source = self._source_factory(cam, self._on_status)
        worker = CameraWorker(
            source,
            self._models,
            camera_analysis(cam, self._config.rules, self._config.counting),
            self._publisher.crowd,
            on_result=self._on_result(),
            metrics=self._metrics,
            camera=cam,
        )
        self._sources[cam.id] = source
        self._workers[cam.id] = worker
        if self._started:
            worker.start()
        log.info("camera %s: started", cam.id)

    def _stop_one(self, camera_id: str, forget: bool = True) -> None:
        worker = self._workers.pop(camera_id)
        self._sources.pop(camera_id)
        worker.stop()
        if forget:
            self._live.remove_camera(camera_id)
            self._metrics.forget_camera(camera_id, worker.zone_ids)
        log.info("camera %s: stopped", camera_id)

    def _on_status(self, event: CameraStatusEvent) -> None:
        log.warning("camera %s: %s %s", event.camera_id, event.type.value, event.reason)
        self._live.camera_status(event)
        if event.type in (EventType.CAMERA_OFFLINE, EventType.CAMERA_ONLINE):
            self._metrics.camera_status(event.camera_id, online=event.type is EventType.CAMERA_ONLINE)
        self._publisher.camera(event)

    def _on_result(self) -> ResultSink:
        live = self._live

        def on_result(frame: object, inputs: object, result: object) -> None:
            live.update_zones(result.states)  # type: ignore[attr-defined]

        return on_result

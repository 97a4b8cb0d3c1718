"""One camera's loop: newest frame -> detect -> count per zone -> rules -> publish."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from crowdwatch.config.camera import CameraConfig
from crowdwatch.core.analysis import AnalysisResult, CameraAnalysis, FrameInputs
from crowdwatch.core.types import CrowdEvent, Frame
from crowdwatch.core.zones import Zone
from crowdwatch.detectors.tiled import Region
from crowdwatch.ingest.base import Source
from crowdwatch.runtime.metrics import WorkerMetrics
from crowdwatch.runtime.models import ModelSet

log = logging.getLogger(__name__)

EventSink = Callable[[CrowdEvent], None]
ResultSink = Callable[[Frame, FrameInputs, AnalysisResult], None]


@dataclass(frozen=True, slots=True)
class WorkerStats:
    frames_analysed: int
    detect_ms_last: float
    detect_ms_avg: float
    errors: int
    last_error: str | None


class CameraWorker:
    def __init__(
        self,
        source: Source,
        models: ModelSet,
        analysis: CameraAnalysis,
        publish: EventSink,
        *,
        on_result: ResultSink | None = None,
        metrics: WorkerMetrics | None = None,
        poll_timeout_s: float = 0.5,
        camera: CameraConfig | None = None,
    ) -> None:
        self.camera = camera
        self.camera_id = source.camera_id
        self._source = source
        self._models = models
        self._tiled_region = _union_box(analysis.tiled_zones())
        self._analysis = analysis
        self._publish = publish
        self._on_result = on_result
        self._metrics = metrics
        self._poll = poll_timeout_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.camera_id}", daemon=True)
        self._frames = 0
        self._detect_ms_total = 0.0
        self._detect_ms_last = 0.0
        self._errors = 0
        self._last_error: str | None = None
        self._checked_size: tuple[int, int] | None = None  # the picture size zones were checked against
        self.finished = threading.Event()

    @property
    def zone_ids(self) -> list[str]:
        return self._analysis.zone_ids

    @property
    def needs_detector(self) -> bool:
        return self._analysis.needs_detector or self._tiled_region is not None

    @property
    def may_need_density(self) -> bool:
        return self._analysis.may_need_density

    def start(self) -> None:
        self._source.start()
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._source.close()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def stats(self) -> WorkerStats:
        n = max(self._frames, 1)
        return WorkerStats(
            self._frames, self._detect_ms_last, self._detect_ms_total / n, self._errors, self._last_error
        )

    def process(self, frame: Frame) -> AnalysisResult:
        """One frame through detect -> count -> rules -> publish (also used directly by tests)."""
        t0 = time.perf_counter()
        analysis, models, image = self._analysis, self._models, frame.image
        size = (frame.width, frame.height)
        if size != self._checked_size:
            self._checked_size = size
            if outside := analysis.zones_outside(size):
                log.warning(
                    "camera %s: zone(s) %s reach beyond its %dx%d picture (drawn for another "
                    "resolution?); only their visible part is counted",
                    self.camera_id,
                    ", ".join(outside),
                    *size,
                )
        detections = models.detect(image) if analysis.needs_detector else None
        tiled = models.detect_tiled(image, self._tiled_region) if self._tiled_region else None
        density = models.density(image) if analysis.plan_density(frame.mono, detections) else None
        ms = (time.perf_counter() - t0) * 1000.0
        inputs = FrameInputs(detections, tiled, density, models.detector_name, models.density_name)
        result = analysis.update(frame.ts, inputs, (frame.width, frame.height), frame.mono)
        for event in result.events:
            self._publish(event)
        self._frames += 1
        self._detect_ms_last = ms
        self._detect_ms_total += ms
        if self._metrics is not None:
            self._metrics.observe(self.camera_id, ms / 1000.0, result)
        if self._on_result is not None:
            self._on_result(frame, inputs, result)
        return result

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self._source.read(self._poll)
                if frame is None:
                    if self._source.ended:
                        log.info("camera %s: source ended", self.camera_id)
                        return
                    continue
                try:
                    self.process(frame)
                except Exception as exc:  # one bad frame must not stop the camera
                    self._errors += 1
                    self._last_error = f"{type(exc).__name__}: {exc}"
                    log.exception("camera %s: frame %d failed", self.camera_id, frame.seq)
                    if self._metrics is not None:
                        self._metrics.errors.labels(camera=self.camera_id).inc()
        finally:
            self.finished.set()


def _union_box(zones: list[Zone]) -> Region | None:
    """One region around every tiled zone: tiles are cut once per frame, not once per zone."""
    if not zones:
        return None
    pts = np.concatenate([z.polygon for z in zones])
    x0, y0 = np.floor(pts.min(axis=0)).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
    return int(x0), int(y0), int(x1), int(y1)

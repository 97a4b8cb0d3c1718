"""One camera's loop: newest frame -> detect -> count per zone -> rules -> publish."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from crowdwatch.core.analysis import AnalysisResult, CameraAnalysis
from crowdwatch.core.types import CrowdEvent, Detections, Frame
from crowdwatch.detectors.base import Detector
from crowdwatch.ingest.base import Source
from crowdwatch.runtime.metrics import WorkerMetrics

log = logging.getLogger(__name__)

EventSink = Callable[[CrowdEvent], None]
ResultSink = Callable[[Frame, Detections, AnalysisResult], None]


@dataclass(frozen=True, slots=True)
class WorkerStats:
    frames_analysed: int
    detect_ms_last: float
    detect_ms_avg: float
    errors: int
    last_error: str | None


class SharedDetector:
    """Serialises calls into one model shared by every camera of a worker: on a CPU box two
    cameras inferring at once only thrash the same cores, and some backends are not
    thread-safe."""

    def __init__(self, detector: Detector) -> None:
        self._detector = detector
        self._lock = threading.Lock()
        self.name = detector.name

    def detect(self, frame: Frame) -> Detections:
        with self._lock:
            return self._detector.detect(frame.image)

    def close(self) -> None:
        self._detector.close()


class CameraWorker:
    def __init__(
        self,
        source: Source,
        detector: SharedDetector,
        analysis: CameraAnalysis,
        publish: EventSink,
        *,
        on_result: ResultSink | None = None,
        metrics: WorkerMetrics | None = None,
        poll_timeout_s: float = 0.5,
    ) -> None:
        self.camera_id = source.camera_id
        self._source = source
        self._detector = detector
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
        self.finished = threading.Event()

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
        detections = self._detector.detect(frame)
        ms = (time.perf_counter() - t0) * 1000.0
        result = self._analysis.update(frame.ts, detections, self._detector.name)
        for event in result.events:
            self._publish(event)
        self._frames += 1
        self._detect_ms_last = ms
        self._detect_ms_total += ms
        if self._metrics is not None:
            self._metrics.observe(self.camera_id, ms / 1000.0, result)
        if self._on_result is not None:
            self._on_result(frame, detections, result)
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

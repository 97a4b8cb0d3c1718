"""The distributed roles: `worker` (ingest -> detect -> count -> publish) and `alerting`
(consume -> route -> store -> escalate). Run as many of each as needed over Kafka and Redis."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from crowdwatch.alerting.metrics import AlertingMetrics
from crowdwatch.alerting.router import build_router
from crowdwatch.alerting.service import DEFAULT_GROUP, AlertingService
from crowdwatch.bus.base import EventBus, Message
from crowdwatch.config.root import AppConfig
from crowdwatch.detectors.base import Detector
from crowdwatch.detectors.density import DensityEstimator
from crowdwatch.runtime.alerting_loop import AlertingLoop
from crowdwatch.runtime.backends import build_bus, build_store
from crowdwatch.runtime.fleet import CameraFleet, SourceFactory, opencv_source
from crowdwatch.runtime.live import LiveState
from crowdwatch.runtime.metrics import WorkerMetrics
from crowdwatch.runtime.models import ModelSet
from crowdwatch.runtime.publisher import EventPublisher
from crowdwatch.store.base import AlertStore

log = logging.getLogger(__name__)


def wait(stop: threading.Event, duration: float | None, done: Callable[[], bool] = lambda: False) -> None:
    deadline = None if duration is None else time.monotonic() + duration
    while not stop.is_set() and not done():
        if deadline is not None and time.monotonic() >= deadline:
            return
        stop.wait(0.25)


class WorkerRole:
    """Runs the cameras of the config (all of them, or those Kafka assigns to this worker)."""

    def __init__(
        self,
        config: AppConfig,
        *,
        registry: CollectorRegistry | None = None,
        models_dir: Path | None = None,
        bus: EventBus | None = None,
        source_factory: SourceFactory = opencv_source,
        detector: Detector | None = None,
        density: DensityEstimator | None = None,
        live: LiveState | None = None,
    ) -> None:
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self._owns_bus = bus is None
        self.bus = bus if bus is not None else build_bus(config.bus, self.registry)
        self.live = live if live is not None else LiveState()
        cameras = [c for c in config.cameras if c.enabled]
        metrics = WorkerMetrics(self.registry)
        self.models = ModelSet(
            config.detector,
            config.counting,
            models_dir,
            detector=detector,
            density=density,
            on_batch=metrics.detect_batch_size.observe,
        )
        need_detector, need_density = CameraFleet.needs(cameras, config)
        self.models.load(detector=need_detector, density=need_density)
        self.fleet = CameraFleet(
            config,
            self.models,
            EventPublisher(self.bus),
            self.live,
            metrics,
            source_factory=source_factory,
        )

    def start(self, cameras: bool = True) -> None:
        """`cameras=False`: start with none; an assignment calls `fleet.set_cameras` later."""
        if cameras:
            self.fleet.set_cameras(self.config.cameras)
        self.fleet.start()

    def run(
        self, stop: threading.Event, duration: float | None = None, until_sources_end: bool = True
    ) -> None:
        """`until_sources_end=False` for Kafka-assigned cameras: more may be assigned later."""
        wait(stop, duration, self.fleet.all_finished if until_sources_end else lambda: False)

    def stop(self) -> None:
        self.fleet.stop()
        self.bus.flush()
        self.models.close()
        if self._owns_bus:
            self.bus.close()


class AlertingRole:
    def __init__(
        self,
        config: AppConfig,
        *,
        registry: CollectorRegistry | None = None,
        bus: EventBus | None = None,
        store: AlertStore | None = None,
        group: str = DEFAULT_GROUP,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._owns_bus = bus is None
        self.bus = bus if bus is not None else build_bus(config.bus, self.registry)
        self.store = store if store is not None else build_store(config.store)
        self.loop = AlertingLoop(
            AlertingService(
                self.bus,
                self.store,
                build_router(config),
                clock,
                group=group,
                metrics=AlertingMetrics.create(self.registry),
                on_error=lambda exc, msg: log.error("alerting: %s (message %s)", exc, _where(msg)),
            )
        )

    def start(self) -> None:
        self.loop.start()

    def run(self, stop: threading.Event, duration: float | None = None) -> None:
        wait(stop, duration)

    def stop(self, drain: bool = False) -> None:
        """Without `drain`, what is uncommitted goes to the next member of the group; embedded
        mode drains, since nobody else will read its in-memory bus."""
        self.loop.stop(drain=drain)
        self.store.close()
        if self._owns_bus:
            self.bus.close()


def _where(msg: Message | None) -> str:
    return "-" if msg is None else f"{msg.topic}[{msg.partition}]@{msg.offset}"

"""Embedded mode: every role in one process (DESIGN 1): the worker and alerting roles over
one bus and one store, which are the in-memory ones unless the config names Kafka and Redis.

Threads: one per camera (decoding is a further thread inside each source), one for the
alerting service, one for the events log. The main thread only watches and stops them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from crowdwatch.bus.base import CAMERA_STATUS, CROWD_EVENTS, Consumer, EventBus
from crowdwatch.config.root import AppConfig
from crowdwatch.core.alerts import AlertChange
from crowdwatch.detectors.base import Detector
from crowdwatch.detectors.density import DensityEstimator
from crowdwatch.runtime.backends import build_bus, build_store
from crowdwatch.runtime.events_log import EventsLog
from crowdwatch.runtime.fleet import SourceFactory, opencv_source
from crowdwatch.runtime.roles import AlertingRole, WorkerRole
from crowdwatch.runtime.worker import CameraWorker
from crowdwatch.store.base import AlertStore, StoreUpdate

log = logging.getLogger(__name__)

EVENTS_LOG_GROUP = "crowdwatch-events-log"


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
        source_factory: SourceFactory = opencv_source,
        bus: EventBus | None = None,
        store: AlertStore | None = None,
    ) -> None:
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self.bus = bus if bus is not None else build_bus(config.bus, self.registry)
        self.store = store if store is not None else build_store(config.store)
        self._events_log = EventsLog(events_out) if events_out is not None else None
        self._log_consumer: Consumer | None = None
        if self._events_log is not None:
            self._log_consumer = self.bus.consumer([CROWD_EVENTS, CAMERA_STATUS], EVENTS_LOG_GROUP)
            self.store.subscribe(self._on_store_update)
        self.alerting = AlertingRole(
            config, registry=self.registry, bus=self.bus, store=self.store, clock=clock
        )
        self.worker = WorkerRole(
            config,
            registry=self.registry,
            models_dir=models_dir,
            bus=self.bus,
            source_factory=source_factory,
            detector=detector,
            density=density,
        )
        self.live = self.worker.live
        self.fleet = self.worker.fleet
        self._stop = threading.Event()
        self._log_thread: threading.Thread | None = None

    @property
    def workers(self) -> list[CameraWorker]:
        return self.fleet.workers()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.alerting.start()
        if self._log_consumer is not None:
            self._log_thread = threading.Thread(target=self._events_log_loop, name="events-log", daemon=True)
            self._log_thread.start()
        self.worker.start()

    def run(self, duration: float | None = None, stop: threading.Event | None = None) -> None:
        """Until `duration` seconds passed, `stop` is set, or every source has ended."""
        deadline = None if duration is None else time.monotonic() + duration
        stop = stop if stop is not None else threading.Event()
        while not stop.is_set():
            self.fleet.refresh_live()
            if self.fleet.all_finished():
                log.info("every source has ended")
                return
            if deadline is not None and time.monotonic() >= deadline:
                return
            stop.wait(0.25)

    def stop(self) -> None:
        """Stop cameras, then let alerting and the events log finish what was published."""
        self.fleet.refresh_live()
        ended = [w.camera_id for w in self.fleet.workers() if self.fleet.source(w.camera_id).ended]
        self.worker.stop()
        self.alerting.stop(drain=True)
        self._stop.set()
        if self._log_thread is not None:
            self._log_thread.join(timeout=10)
        if self._log_consumer is not None:
            self._drain_events_log(0.0)
            self._log_consumer.close()
        for camera_id in ended:
            self.live.update_camera(camera_id, status="ended")
        if self._events_log is not None:
            self._events_log.close()
        self.bus.close()

    def __enter__(self) -> EmbeddedApp:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def center_names(self) -> dict[str, str]:
        return {c.id: c.name for c in self.config.centers}

    # -- events log --------------------------------------------------------------------------

    def _on_store_update(self, update: StoreUpdate) -> None:
        if self._events_log is not None and isinstance(update, AlertChange):
            self._events_log.alert_change(update)

    def _events_log_loop(self) -> None:
        while not self._stop.is_set():
            self._drain_events_log(0.2)

    def _drain_events_log(self, timeout: float) -> None:
        consumer, events_log = self._log_consumer, self._events_log
        assert consumer is not None
        assert events_log is not None
        while True:
            batch = consumer.poll(timeout)
            if not batch:
                return
            for msg in batch:
                try:
                    events_log.message(msg)
                except ValueError as exc:  # not an event (garbage on the topic): the DLQ's business
                    log.warning(
                        "events log: skipping %s[%d]@%d, not an event: %s",
                        msg.topic,
                        msg.partition,
                        msg.offset,
                        exc,
                    )
            consumer.commit(batch)
            timeout = 0.0

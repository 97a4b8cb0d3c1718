"""Runs an AlertingService on a thread: consume, store, commit; escalate overdue alerts.

A consumer-group rebalance or a broker hiccup can make a poll or commit fail; the loop then
drops the consumer (uncommitted messages come again, to this or another member) and carries on
after a backoff, instead of ending the role."""

from __future__ import annotations

import logging
import threading

from crowdwatch.alerting.service import AlertingService

log = logging.getLogger(__name__)


class AlertingLoop:
    def __init__(
        self, service: AlertingService, *, poll_timeout: float = 0.2, backoff_s: float = 1.0
    ) -> None:
        self.service = service
        self._poll = poll_timeout
        self._backoff = backoff_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alerting", daemon=True)
        self.failures = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, drain: bool = True) -> None:
        """Stop the thread; with `drain`, finish what is already on the bus first."""
        self._stop.set()
        self._thread.join(timeout=30)
        try:
            if drain:
                while self.service.run_once(0.0) > 0:
                    pass
                self.service.tick()
        finally:  # a failing drain still leaves the group (what it did not commit comes again)
            self.service.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.service.run_once(self._poll)
                self.service.tick()
            except Exception:
                self.failures += 1
                log.exception("alerting: consumer failed; reconnecting in %.1f s", self._backoff)
                self.service.close()
                self._stop.wait(self._backoff)

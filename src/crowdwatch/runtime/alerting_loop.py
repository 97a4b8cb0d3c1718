"""Runs an AlertingService on a thread: consume, store, commit; escalate overdue alerts.

A consumer-group rebalance or a broker hiccup can make a poll or commit fail; the loop then
drops the consumer (uncommitted messages come again, to this or another member) and carries on
after a backoff, instead of ending the role. The backoff doubles while the failures go on (up to
`max_backoff_s`) and starts again at the first success; the first failure of a run is logged with
its traceback, the later ones in a line each, and the recovery in one more."""

from __future__ import annotations

import logging
import threading
from collections import deque

from crowdwatch.alerting.service import AlertingService

log = logging.getLogger(__name__)


class AlertingLoop:
    def __init__(
        self,
        service: AlertingService,
        *,
        poll_timeout: float = 0.2,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.service = service
        self._poll = poll_timeout
        self._backoff, self._max_backoff = backoff_s, max(backoff_s, max_backoff_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alerting", daemon=True)
        self.failures = 0  # in all
        self.waits: deque[float] = deque(maxlen=64)  # the last backoffs waited, in order

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
        streak = 0  # failures since the last success
        while not self._stop.is_set():
            try:
                self.service.run_once(self._poll)
                self.service.tick()
            except Exception as exc:
                self.failures += 1
                streak += 1
                wait = min(self._max_backoff, self._backoff * 2 ** min(streak - 1, 30))
                if streak == 1:
                    log.exception("alerting: consumer failed; reconnecting in %.1f s", wait)
                else:  # the same outage, most likely: its traceback was logged once
                    log.error(
                        "alerting: consumer still failing (%d times in a row): %s; retrying in %.1f s",
                        streak,
                        _one_line(exc),
                        wait,
                    )
                self.service.close()
                self.waits.append(wait)
                self._stop.wait(wait)
            else:
                if streak:
                    log.warning("alerting: consumer working again after %d failures", streak)
                    streak = 0


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text}"

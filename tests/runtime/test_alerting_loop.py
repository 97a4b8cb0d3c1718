"""The alerting role's loop: a failure while draining at shutdown still leaves the group."""

from __future__ import annotations

import threading
from typing import cast

import pytest

from crowdwatch.alerting.service import AlertingService
from crowdwatch.runtime.alerting_loop import AlertingLoop


class BrokenDrain:
    """A service whose polls find nothing until the drain at shutdown, which fails (the broker
    went away meanwhile)."""

    def __init__(self) -> None:
        self.closed = 0

    def run_once(self, timeout: float) -> int:
        if timeout == 0.0:  # the drain
            raise ConnectionError("broker gone")
        return 0

    def tick(self) -> None:
        pass

    def close(self) -> None:
        self.closed += 1


def test_a_failing_drain_still_closes_the_service() -> None:
    service = BrokenDrain()
    loop = AlertingLoop(cast(AlertingService, service), poll_timeout=0.01)
    loop.start()
    with pytest.raises(ConnectionError):  # not swallowed: the caller hears of it
        loop.stop(drain=True)
    assert service.closed == 1


class Outage:
    """A service whose polls fail `failures` times (a broker away), then work."""

    def __init__(self, failures: int) -> None:
        self.left = failures
        self.closed = 0
        self.worked = threading.Event()

    def run_once(self, timeout: float) -> int:
        if self.left:
            self.left -= 1
            raise ConnectionError(f"broker gone\n({self.left} to go)")
        self.worked.set()
        return 0

    def tick(self) -> None:
        pass

    def close(self) -> None:
        self.closed += 1


def test_the_backoff_doubles_while_failing_and_the_log_does_not_repeat_the_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = Outage(5)
    loop = AlertingLoop(
        cast(AlertingService, service), poll_timeout=0.0, backoff_s=0.001, max_backoff_s=0.004
    )
    with caplog.at_level("WARNING", logger="crowdwatch.runtime.alerting_loop"):
        loop.start()
        assert service.worked.wait(10), "the loop never got past the outage"
        loop.stop(drain=False)
    assert list(loop.waits) == [0.001, 0.002, 0.004, 0.004, 0.004]
    assert (loop.failures, service.closed) == (5, 6)  # each failure drops the consumer; so does stop
    records = [r for r in caplog.records if r.name == "crowdwatch.runtime.alerting_loop"]
    assert [r.exc_info is not None for r in records] == [True, False, False, False, False, False]
    assert (
        "still failing (5 times in a row): ConnectionError: broker gone (0 to go)" in records[4].getMessage()
    )
    assert records[5].getMessage() == "alerting: consumer working again after 5 failures"

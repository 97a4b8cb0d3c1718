"""The alerting role's loop: a failure while draining at shutdown still leaves the group."""

from __future__ import annotations

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

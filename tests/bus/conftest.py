"""Backends for the bus contract tests. Adding one (Kafka) is one more entry in BACKENDS, e.g.
`pytest.param(kafka_bus, id="kafka", marks=pytest.mark.kafka)`."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator

import pytest

from crowdwatch.bus.base import EventBus
from crowdwatch.bus.memory import MemoryBus

BusFactory = Callable[[], EventBus]


def memory_bus() -> EventBus:
    return MemoryBus()


BACKENDS = [pytest.param(memory_bus, id="memory")]


@pytest.fixture(params=BACKENDS)
def bus_factory(request: pytest.FixtureRequest) -> Iterator[BusFactory]:
    """Makes buses on one backend (several may share a broker); closes them all afterwards."""
    made: list[EventBus] = []
    make: BusFactory = request.param

    def factory() -> EventBus:
        made.append(make())
        return made[-1]

    yield factory
    for bus in made:
        bus.close()


@pytest.fixture
def names() -> Callable[[str], str]:
    """Unique topic and group names, so tests never see each other's data on a shared broker."""
    run = uuid.uuid4().hex[:8]
    counter = itertools.count()
    return lambda prefix: f"{prefix}-{run}-{next(counter)}"

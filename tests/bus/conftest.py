"""Backends for the bus contract tests. Adding one is one more entry in BACKENDS. The Kafka
backend needs the broker of `scripts/services start kafka` at $CROWDWATCH_KAFKA."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterable, Iterator

import pytest
from kafka import KafkaAdminClient

from crowdwatch.bus.base import EventBus
from crowdwatch.bus.kafka import KafkaBus
from crowdwatch.bus.memory import MemoryBus

BusFactory = Callable[[], EventBus]


def memory_bus() -> EventBus:
    return MemoryBus()


KAFKA_ENV = "CROWDWATCH_KAFKA"


def kafka_address() -> str:
    """The test broker from $CROWDWATCH_KAFKA; skips without it (fails when CI=true)."""
    address = os.environ.get(KAFKA_ENV)
    if not address:
        why = f"${KAFKA_ENV} is not set (e.g. 127.0.0.1:19092 after `scripts/services start kafka`)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {why}")
        pytest.skip(why)
    return address


def kafka_bus() -> KafkaBus:
    """A bus on the test broker. Topics the tests name get 3 partitions, so that keys spread."""
    return KafkaBus(
        {"bootstrap_servers": kafka_address(), "client_id": "crowdwatch-test"}, default_partitions=3
    )


def drop_topics(topics: Iterable[str]) -> None:
    """Delete test topics, so that the broker does not pile up partitions run after run
    (each one costs broker start-up time)."""
    admin = KafkaAdminClient(bootstrap_servers=kafka_address(), client_id="crowdwatch-test")
    try:
        existing = set(admin.list_topics()) & set(topics)
        if existing:
            admin.delete_topics(sorted(existing))
    finally:
        admin.close()


BACKENDS = [
    pytest.param(memory_bus, id="memory"),
    pytest.param(kafka_bus, id="kafka", marks=pytest.mark.kafka),
]


@pytest.fixture(params=BACKENDS)
def bus_factory(request: pytest.FixtureRequest) -> Iterator[BusFactory]:
    """Makes buses on one backend (several may share a broker); closes them all afterwards."""
    made: list[EventBus] = []
    make: BusFactory = request.param

    def factory() -> EventBus:
        made.append(make())
        return made[-1]

    yield factory
    topics: set[str] = set()
    for bus in made:
        bus.close()
        if isinstance(bus, KafkaBus):
            topics |= bus.known_topics
    if topics:
        drop_topics(topics)


@pytest.fixture
def names() -> Callable[[str], str]:
    """Unique topic and group names, so tests never see each other's data on a shared broker."""
    run = uuid.uuid4().hex[:8]
    counter = itertools.count()
    return lambda prefix: f"{prefix}-{run}-{next(counter)}"

"""SpoolingBus(KafkaBus) through a real broker outage: the test stops the broker of
`scripts/services` and starts it again. Every message arrives, in order per key."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from crowdwatch.bus.base import Message
from crowdwatch.bus.kafka import KafkaBus
from crowdwatch.bus.spool import SpoolingBus

from .conftest import drop_topics, kafka_address

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SERVICES = Path(__file__).resolve().parents[2] / "scripts" / "services"
KEYS = 4


def services(*args: str) -> None:
    result = subprocess.run([str(SERVICES), *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (
        f"scripts/services {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    )


@pytest.fixture
def managed_broker() -> Iterator[str]:
    """The broker address, if scripts/services runs it (so that the test may stop it); the
    broker is started again afterwards whatever happens."""
    address = kafka_address()
    port = os.environ.get("CROWDWATCH_KAFKA_PORT", "19092")
    if address != f"127.0.0.1:{port}" or subprocess.run([str(SERVICES), "status", "kafka"]).returncode:
        why = f"${address} is not the broker of scripts/services (127.0.0.1:{port}); cannot stop it"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    yield address
    services("start", "kafka")


def publish(bus: SpoolingBus, topic: str, numbers: range) -> None:
    for i in numbers:
        bus.publish(topic, f"cam-{i % KEYS}", str(i).encode(), {"n": str(i).encode()})


def read_all(address: str, topic: str, expected: int, deadline_s: float = 60.0) -> list[Message]:
    """Read `topic` from the start with a fresh group until `expected` distinct values came."""
    bus = KafkaBus({"bootstrap_servers": address})
    consumer = bus.consumer([topic], f"outage-check-{uuid.uuid4().hex[:8]}")
    got: list[Message] = []
    deadline = time.monotonic() + deadline_s
    while len({m.value for m in got}) < expected and time.monotonic() < deadline:
        got.extend(consumer.poll(0.5))
    consumer.close()
    bus.close()
    return got


def spooling_kafka_bus(address: str, path: Path, registry: CollectorRegistry) -> SpoolingBus:
    inner = KafkaBus(
        {"bootstrap_servers": address, "client_id": "outage-test"},
        default_partitions=3,
        request_timeout_ms=3000,
        delivery_timeout_ms=20_000,
        max_block_ms=2000,
    )
    return SpoolingBus(
        inner,
        path,
        registry=registry,
        confirm_interval=0.2,
        flush_timeout=3.0,
        retry_initial=0.2,
        retry_max=2.0,
    )


def assert_all_in_order(got: list[Message], expected: range) -> None:
    values = [int(m.value) for m in got]
    assert set(values) == set(expected), f"missing: {sorted(set(expected) - set(values))}"
    for k in range(KEYS):
        firsts = list(dict.fromkeys(int(m.value) for m in got if m.key == f"cam-{k}"))
        assert firsts == [i for i in expected if i % KEYS == k]
    assert all(m.header("n") == m.value for m in got)


def test_messages_survive_a_broker_outage(managed_broker: str, tmp_path: Path) -> None:
    """A running worker loses its broker; a second worker starts while the broker is down."""
    topic, late_topic = f"outage-{uuid.uuid4().hex[:8]}", f"outage-late-{uuid.uuid4().hex[:8]}"
    registry, late_registry = CollectorRegistry(), CollectorRegistry()
    bus = spooling_kafka_bus(managed_broker, tmp_path / "spool.sqlite", registry)
    late: SpoolingBus | None = None
    try:
        publish(bus, topic, range(30))
        bus.flush()
        assert bus.depth == 0

        services("stop", "kafka")
        publish(bus, topic, range(30, 90))
        bus.flush(3.0)  # the broker cannot confirm: the messages go to the spool
        assert bus.depth > 0
        late = spooling_kafka_bus(managed_broker, tmp_path / "late.sqlite", late_registry)
        publish(late, late_topic, range(20))  # no connection at all: straight to the spool
        assert late.depth == 20

        services("start", "kafka")
        publish(bus, topic, range(90, 120))  # queued behind the spooled ones
        assert bus.drain(120.0), f"spool not drained: {bus.depth} left"
        assert late.drain(120.0), f"spool not drained: {late.depth} left"
    finally:
        bus.close()
        if late is not None:
            late.close()

    try:
        assert_all_in_order(read_all(managed_broker, topic, 120), range(120))
        assert_all_in_order(read_all(managed_broker, late_topic, 20), range(20))
    finally:
        drop_topics([topic, late_topic])
    for r in (registry, late_registry):
        spooled = r.get_sample_value("crowdwatch_bus_spooled_messages_total") or 0.0
        assert spooled > 0
        assert r.get_sample_value("crowdwatch_bus_replayed_messages_total") == spooled
        assert r.get_sample_value("crowdwatch_bus_spool_depth") == 0

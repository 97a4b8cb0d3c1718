"""AlertingService over real Kafka: bad messages land in the dead-letter topic with the error,
the service keeps consuming, and its commits hold for the next member of the group."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence

import pytest
from prometheus_client import CollectorRegistry

from alerting.builders import FakeClock, crowd_event, world_router
from crowdwatch.alerting.metrics import AlertingMetrics
from crowdwatch.alerting.service import AlertingService
from crowdwatch.bus.base import CROWD_EVENTS, CROWD_EVENTS_DLQ, Consumer, Headers, Message
from crowdwatch.bus.kafka import DEFAULT_TOPICS, KafkaBus, TopicSpec
from crowdwatch.core import codec
from crowdwatch.core.types import EventType
from crowdwatch.store.memory import MemoryAlertStore

from .conftest import drop_topics, kafka_address

pytestmark = pytest.mark.kafka

DEADLINE_S = 30.0


class RenamingBus:
    """The service uses the fixed topic names; this gives them a per-test suffix, so that the
    test sees only its own messages on a shared broker."""

    def __init__(self, inner: KafkaBus, suffix: str) -> None:
        self.inner = inner
        self.suffix = suffix

    def name(self, topic: str) -> str:
        return f"{topic}-{self.suffix}"

    def publish(self, topic: str, key: str, value: bytes, headers: Headers | None = None) -> None:
        self.inner.publish(self.name(topic), key, value, headers)

    def flush(self, timeout: float = 10.0) -> None:
        self.inner.flush(timeout)

    def consumer(self, topics: Sequence[str], group: str) -> Consumer:
        return self.inner.consumer([self.name(t) for t in topics], group)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def bus() -> Iterator[RenamingBus]:
    suffix = uuid.uuid4().hex[:8]
    topics = {
        f"{t}-{suffix}": TopicSpec(f"{t}-{suffix}", s.partitions, s.compacted)
        for t, s in DEFAULT_TOPICS.items()
    }
    renaming = RenamingBus(KafkaBus({"bootstrap_servers": kafka_address()}, topics=topics), suffix)
    yield renaming
    renaming.close()
    drop_topics(topics)


def make_service(
    bus: RenamingBus,
    store: MemoryAlertStore,
    group: str,
    errors: list[Exception],
    registry: CollectorRegistry | None = None,
) -> AlertingService:
    return AlertingService(
        bus,
        store,
        world_router(),
        FakeClock(),
        group=group,
        on_error=lambda exc, msg: errors.append(exc),
        metrics=AlertingMetrics.create(registry or CollectorRegistry()),
    )


def process(service: AlertingService, expected: int) -> int:
    done = 0
    deadline = time.monotonic() + DEADLINE_S
    while done < expected and time.monotonic() < deadline:
        done += service.run_once(0.2)
    return done


def read(bus: RenamingBus, topic: str, count: int) -> list[Message]:
    consumer = bus.consumer([topic], f"reader-{uuid.uuid4().hex[:8]}")
    got: list[Message] = []
    deadline = time.monotonic() + DEADLINE_S
    while len(got) < count and time.monotonic() < deadline:
        got.extend(consumer.poll(0.2))
    consumer.close()
    return got


def schema_invalid() -> bytes:
    envelope = codec.to_envelope(crowd_event(seq=7))
    envelope["data"]["count"] = -3
    return json.dumps(envelope).encode()


def test_bad_messages_go_to_the_dlq_and_the_service_keeps_consuming(bus: RenamingBus) -> None:
    garbage = b"\x00\xffnot json at all " + uuid.uuid4().bytes
    invalid = schema_invalid()
    # One camera, one partition: the good event sits behind both bad ones.
    bus.publish(CROWD_EVENTS, "cam-1", garbage, {"trace": b"t-1"})
    bus.publish(CROWD_EVENTS, "cam-1", invalid)
    bus.publish(CROWD_EVENTS, "cam-1", codec.encode(crowd_event(seq=0)))
    bus.flush()

    errors: list[Exception] = []
    store, group = MemoryAlertStore(), f"alerting-{uuid.uuid4().hex[:8]}"
    service = make_service(bus, store, group, errors)
    assert process(service, 3) == 3
    service.close()

    dead = read(bus, CROWD_EVENTS_DLQ, 2)
    assert [m.value for m in dead] == [garbage, invalid]
    first, second = dead
    assert first.key == "cam-1"
    assert first.header("error-reason") == b"decode"
    assert "not UTF-8" in (first.header("error") or b"").decode()
    assert first.header("trace") == b"t-1"  # the original headers travel along
    assert first.header("source-topic") == bus.name(CROWD_EVENTS).encode()
    assert second.header("error-reason") == b"schema"
    assert "data.count: -3 is less than the minimum of 0" in (second.header("error") or b"").decode()
    assert second.header("source-offset") == str(int(first.header("source-offset") or b"-1") + 1).encode()
    assert [a.camera_id for a in store.list_alerts()] == ["cam-1"]
    assert errors == []

    # The commits hold: the next member of the group starts after the three messages.
    later = crowd_event(EventType.GATHERING_UPDATED, seq=1, count=50.0, peak=50.0)
    bus.publish(CROWD_EVENTS, "cam-1", codec.encode(later))
    bus.flush()
    registry = CollectorRegistry()
    successor = make_service(bus, store, group, errors, registry)
    assert process(successor, 1) == 1
    successor.close()
    (alert,) = store.list_alerts()
    assert alert.peak == 50.0
    # Had the bad ones come again, they would have been processed before the new event.
    for reason in ("decode", "schema"):
        assert registry.get_sample_value("crowdwatch_alerting_dlq_messages_total", {"reason": reason}) in (
            None,
            0,
        )
    assert errors == []


def test_a_dead_letter_too_big_for_one_record_is_cut_to_fit(bus: RenamingBus) -> None:
    # About the largest value the producer takes (1 MiB less its record framing): with the dead
    # letter's headers it would no longer fit, and the partition would stop behind it.
    huge = b"\xff" * 1_048_450
    bus.publish(CROWD_EVENTS, "cam-1", huge)
    bus.publish(CROWD_EVENTS, "cam-1", codec.encode(crowd_event(seq=0)))
    bus.flush()

    errors: list[Exception] = []
    store = MemoryAlertStore()
    service = make_service(bus, store, f"alerting-{uuid.uuid4().hex[:8]}", errors)
    assert process(service, 2) == 2
    service.close()

    (dead,) = read(bus, CROWD_EVENTS_DLQ, 1)
    assert dead.header("truncated-from") == str(len(huge)).encode()
    assert 0 < len(dead.value) < len(huge)
    assert dead.value == huge[: len(dead.value)]
    assert dead.header("source-offset") == b"0"  # where the whole message still is
    assert [a.camera_id for a in store.list_alerts()] == ["cam-1"]
    assert errors == []

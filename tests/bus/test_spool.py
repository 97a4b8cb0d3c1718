"""SpoolingBus over a fake inner bus that fails on demand: nothing lost, order kept per key,
duplicates allowed (DESIGN 6). No broker needed; test_kafka_outage.py does it on real Kafka."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from crowdwatch.bus.base import Consumer, Headers, Message
from crowdwatch.bus.memory import MemoryBus
from crowdwatch.bus.spool import SpoolError, SpoolingBus

TOPIC = "crowd-events"


class FlakyBus:
    """Like an async producer: publish queues, flush delivers to a MemoryBus. `down` makes
    publish raise (no metadata); `flush_fails` makes flush raise and lose the queue, after
    delivering the first `deliver_on_failure` queued messages (a partial success: duplicates)."""

    def __init__(self) -> None:
        self.delivered = MemoryBus()
        self.down = False
        self.flush_fails = False
        self.deliver_on_failure = 0
        self.publish_calls = 0
        self._queue: list[tuple[str, str, bytes, Headers | None]] = []
        self._lock = threading.Lock()

    def publish(self, topic: str, key: str, value: bytes, headers: Headers | None = None) -> None:
        with self._lock:
            self.publish_calls += 1
            if self.down:
                raise ConnectionError("broker unreachable")
            self._queue.append((topic, key, value, headers))

    def flush(self, timeout: float = 10.0) -> None:
        with self._lock:
            queue, self._queue = self._queue, []
            if self.down or self.flush_fails:
                for message in queue[: self.deliver_on_failure]:
                    self.delivered.publish(*message)
                raise TimeoutError("not acknowledged")
            for message in queue:
                self.delivered.publish(*message)

    def consumer(self, topics: Sequence[str], group: str) -> Consumer:
        return self.delivered.consumer(topics, group)

    def close(self) -> None:
        pass

    def values(self, topic: str = TOPIC) -> list[tuple[str | None, int]]:
        return [(m.key, int(m.value)) for m in self.delivered.messages(topic)]


@pytest.fixture
def inner() -> FlakyBus:
    return FlakyBus()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def spool_path(tmp_path: Path) -> Path:
    return tmp_path / "spool" / "events.sqlite"


@pytest.fixture
def bus(inner: FlakyBus, spool_path: Path, registry: CollectorRegistry) -> Iterator[SpoolingBus]:
    """No background thread: the tests decide when to replay."""
    with SpoolingBus(inner, spool_path, registry=registry, background=False) as made:
        yield made


def publish_range(bus: SpoolingBus, numbers: range, keys: int = 3) -> None:
    for i in numbers:
        bus.publish(TOPIC, f"cam-{i % keys}", str(i).encode())


def assert_complete_and_ordered(got: list[tuple[str | None, int]], expected: range, keys: int = 3) -> None:
    """Every message at least once; per key, first deliveries in publish order."""
    assert {v for _, v in got} == set(expected)
    for k in range(keys):
        firsts: list[int] = []
        for key, v in got:
            if key == f"cam-{k}" and v not in firsts:
                firsts.append(v)
        assert firsts == [i for i in expected if i % keys == k]


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_healthy_broker_means_straight_through(
    bus: SpoolingBus, inner: FlakyBus, registry: CollectorRegistry
) -> None:
    publish_range(bus, range(5))
    bus.flush()
    assert inner.values() == [(f"cam-{i % 3}", i) for i in range(5)]
    assert bus.depth == 0
    assert sample(registry, "crowdwatch_bus_spooled_messages_total") == 0


def test_order_is_kept_across_an_outage(
    bus: SpoolingBus, inner: FlakyBus, registry: CollectorRegistry
) -> None:
    publish_range(bus, range(10))
    bus.flush()
    inner.down = True
    publish_range(bus, range(10, 20))
    assert bus.depth == 10
    assert bus.replay() == 0  # still down: nothing replayed, nothing deleted
    inner.down = False
    publish_range(bus, range(20, 30))  # broker back, spool not empty: these queue behind
    assert bus.depth == 20
    assert inner.values() == [(f"cam-{i % 3}", i) for i in range(10)]
    assert bus.drain(5.0)
    assert inner.values() == [(f"cam-{i % 3}", i) for i in range(30)]
    assert bus.depth == 0
    assert sample(registry, "crowdwatch_bus_spooled_messages_total") == 20
    assert sample(registry, "crowdwatch_bus_replayed_messages_total") == 20
    assert sample(registry, "crowdwatch_bus_spool_depth") == 0
    assert sample(registry, "crowdwatch_bus_broker_failures_total", stage="publish") == 1


def test_unconfirmed_messages_are_spooled_when_flush_fails(bus: SpoolingBus, inner: FlakyBus) -> None:
    """The broker took the messages but never acknowledged them (an async producer's failure)."""
    publish_range(bus, range(6))
    inner.flush_fails = True
    bus.flush()  # does not raise: the messages are durable in the spool
    assert bus.depth == 6
    assert inner.values() == []
    inner.flush_fails = False
    assert bus.drain(5.0)
    assert_complete_and_ordered(inner.values(), range(6))


def test_a_failing_publish_spools_the_unconfirmed_ones_first(bus: SpoolingBus, inner: FlakyBus) -> None:
    publish_range(bus, range(4))  # queued in the inner bus, not yet confirmed
    inner.down = True
    publish_range(bus, range(4, 8))
    inner.down = False
    assert bus.drain(5.0)
    # 0..3 may arrive twice (the inner bus still had them), but nothing is lost or reordered.
    assert_complete_and_ordered(inner.values(), range(8))


def test_partial_delivery_gives_duplicates_not_losses(bus: SpoolingBus, inner: FlakyBus) -> None:
    publish_range(bus, range(10))
    inner.flush_fails, inner.deliver_on_failure = True, 4
    bus.flush()
    assert bus.replay() == 0  # the replay attempt fails too, after delivering its first message
    inner.flush_fails = False
    assert bus.drain(5.0)
    got = inner.values()
    assert len(got) > 10
    assert_complete_and_ordered(got, range(10))


def test_replay_probes_with_one_message_while_the_broker_is_down(bus: SpoolingBus, inner: FlakyBus) -> None:
    inner.flush_fails = True  # publish succeeds, nothing is acknowledged
    publish_range(bus, range(50))
    bus.flush()
    assert bus.depth == 50
    inner.publish_calls = 0
    for _ in range(3):
        assert bus.replay() == 0
    assert inner.publish_calls == 50 + 1 + 1  # one full batch, then one message per attempt
    inner.flush_fails = False
    assert bus.drain(5.0)
    assert_complete_and_ordered(inner.values(), range(50))


def test_spool_survives_a_restart(inner: FlakyBus, spool_path: Path) -> None:
    inner.down = True
    first = SpoolingBus(inner, spool_path, background=False)
    publish_range(first, range(12))
    first.publish(TOPIC, "cam-0", b"12", {"trace": b"\x00\xffbinary"})
    first.close()  # the broker is still down: the messages stay in the file

    inner.down = False
    registry = CollectorRegistry()
    second = SpoolingBus(inner, spool_path, registry=registry, background=False)
    assert second.depth == 13
    assert sample(registry, "crowdwatch_bus_spool_depth") == 13
    assert second.drain(5.0)
    second.close()
    assert inner.values() == [(f"cam-{i % 3}", i) for i in range(12)] + [("cam-0", 12)]
    assert inner.delivered.messages(TOPIC)[-1].header("trace") == b"\x00\xffbinary"


def test_background_thread_replays_after_recovery(inner: FlakyBus, spool_path: Path) -> None:
    registry = CollectorRegistry()
    with SpoolingBus(
        inner, spool_path, registry=registry, confirm_interval=0.05, retry_initial=0.01, retry_max=0.05
    ) as bus:
        inner.down = True
        publish_range(bus, range(20))
        assert bus.depth == 20
        inner.down = False
        assert bus.drain(10.0)
        publish_range(bus, range(20, 25))
        assert bus.drain(10.0)
    assert_complete_and_ordered(inner.values(), range(25))
    assert sample(registry, "crowdwatch_bus_replayed_messages_total") == 20


def test_background_thread_confirms_without_an_explicit_flush(inner: FlakyBus, spool_path: Path) -> None:
    """A worker that never calls flush still gets its undelivered messages spooled."""
    with SpoolingBus(inner, spool_path, confirm_interval=0.01, retry_initial=0.01, retry_max=0.05) as bus:
        inner.flush_fails = True
        publish_range(bus, range(3))
        inner.flush_fails = False
        assert bus.drain(10.0)
    assert_complete_and_ordered(inner.values(), range(3))


def wait_until(condition: Callable[[], bool], deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.001)


def test_messages_published_from_several_threads_all_arrive(inner: FlakyBus, spool_path: Path) -> None:
    """Cameras keep publishing through the outage and while the spool drains."""
    with SpoolingBus(inner, spool_path, confirm_interval=0.01, retry_initial=0.01, retry_max=0.05) as bus:

        def camera(k: int) -> None:
            for i in range(300):
                bus.publish(TOPIC, f"cam-{k}", str(i).encode())

        inner.down = True
        threads = [threading.Thread(target=camera, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        wait_until(lambda: bus.depth >= 100)
        inner.down = False
        for t in threads:
            t.join()
        assert bus.drain(10.0)
    for k in range(4):
        values = [v for key, v in inner.values() if key == f"cam-{k}"]
        assert list(dict.fromkeys(values)) == list(range(300))


def test_one_process_per_spool_file(inner: FlakyBus, spool_path: Path, bus: SpoolingBus) -> None:
    with pytest.raises(SpoolError, match="in use"):
        SpoolingBus(inner, spool_path, background=False)


def test_consumers_come_from_the_inner_bus(bus: SpoolingBus) -> None:
    publish_range(bus, range(2))
    bus.flush()
    got: list[Message] = bus.consumer([TOPIC], "g").poll(0, 10)
    assert [m.value for m in got] == [b"0", b"1"]


def test_closed_bus_refuses_publish(bus: SpoolingBus) -> None:
    bus.close()
    bus.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        bus.publish(TOPIC, "k", b"x")


def test_a_spool_that_cannot_write_raises_instead_of_dropping(
    bus: SpoolingBus, inner: FlakyBus, spool_path: Path
) -> None:
    publish_range(bus, range(2))  # unconfirmed, in memory
    read_only = f"file:{spool_path}?mode=ro"
    bus._db = sqlite3.connect(read_only, uri=True, isolation_level=None, check_same_thread=False)
    inner.down = True
    with pytest.raises(SpoolError, match="cannot write 3 message"):
        publish_range(bus, range(2, 3))
    inner.down = False
    # The two unconfirmed ones are still held and go out with the next confirmation.
    bus.flush()
    assert inner.values() == [("cam-0", 0), ("cam-1", 1)]


class ClosingBus(FlakyBus):
    closed = False

    def close(self) -> None:
        self.closed = True


def test_close_releases_everything_even_when_the_spool_cannot_write(spool_path: Path) -> None:
    inner = ClosingBus()
    bus = SpoolingBus(inner, spool_path, background=False)
    publish_range(bus, range(1))  # unconfirmed
    bus._db = sqlite3.connect(
        f"file:{spool_path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
    )
    inner.down = True
    with pytest.raises(SpoolError):
        bus.close()
    assert inner.closed
    # The lock is released: the role can start again on the same file in this process.
    SpoolingBus(ClosingBus(), spool_path, background=False).close()

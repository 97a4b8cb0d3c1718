"""What every EventBus must do (DESIGN 6): keyed publish, groups, commit-after-processing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from crowdwatch.bus.base import Consumer, EventBus, Message

BusFactory = Callable[[], EventBus]  # the `bus_factory` fixture, see conftest.py

WAIT = 10.0  # generous deadline for a real broker; memory answers at once


def poll_until(consumer: Consumer, count: int, deadline_s: float = WAIT) -> list[Message]:
    """Poll until `count` messages came or the deadline passed (a real broker needs a few polls
    to join the group)."""
    out: list[Message] = []
    deadline = time.monotonic() + deadline_s
    while len(out) < count and time.monotonic() < deadline:
        out.extend(consumer.poll(0.2, count - len(out)))
    return out


def test_publish_and_consume(bus_factory: BusFactory, names: Callable[[str], str]) -> None:
    bus, topic = bus_factory(), names("t")
    bus.publish(topic, "cam-1", b"one", {"trace": b"abc"})
    bus.publish(topic, "cam-1", b"two")
    bus.flush()
    with_consumer = bus.consumer([topic], names("g"))
    got = poll_until(with_consumer, 2)
    assert [(m.topic, m.key, m.value) for m in got] == [(topic, "cam-1", b"one"), (topic, "cam-1", b"two")]
    assert got[0].header("trace") == b"abc"
    assert got[1].headers == ()
    assert got[1].offset > got[0].offset
    assert got[0].partition == got[1].partition
    with_consumer.close()


def test_order_is_kept_per_key(bus_factory: BusFactory, names: Callable[[str], str]) -> None:
    bus, topic = bus_factory(), names("t")
    for i in range(20):
        bus.publish(topic, f"cam-{i % 3}", str(i).encode())
    bus.flush()
    consumer = bus.consumer([topic], names("g"))
    got = poll_until(consumer, 20)
    for key in ("cam-0", "cam-1", "cam-2"):
        values = [int(m.value) for m in got if m.key == key]
        assert values == sorted(values)
    consumer.close()


def test_poll_returns_empty_after_timeout(bus_factory: BusFactory, names: Callable[[str], str]) -> None:
    consumer = bus_factory().consumer([names("t")], names("g"))
    assert consumer.poll(0.05, 10) == []
    consumer.close()


def test_poll_respects_max_messages(bus_factory: BusFactory, names: Callable[[str], str]) -> None:
    bus, topic = bus_factory(), names("t")
    for i in range(5):
        bus.publish(topic, "k", bytes([i]))
    bus.flush()
    consumer = bus.consumer([topic], names("g"))
    first = poll_until(consumer, 1)
    assert len(first) == 1
    rest = poll_until(consumer, 4)
    assert [m.value for m in first + rest] == [bytes([i]) for i in range(5)]
    consumer.close()


def test_poll_wakes_up_on_publish(bus_factory: BusFactory, names: Callable[[str], str]) -> None:
    bus, topic, group = bus_factory(), names("t"), names("g")
    consumer = bus.consumer([topic], group)
    consumer.poll(0.05, 1)  # join the group first
    got: list[Message] = []
    polling = threading.Event()

    def wait_for_one() -> None:
        polling.set()
        got.extend(poll_until(consumer, 1))

    thread = threading.Thread(target=wait_for_one)
    thread.start()
    polling.wait(WAIT)
    bus.publish(topic, "k", b"late")
    bus.flush()
    thread.join(WAIT + 1)
    assert [m.value for m in got] == [b"late"]
    consumer.close()


def test_committed_messages_are_not_delivered_again(
    bus_factory: BusFactory, names: Callable[[str], str]
) -> None:
    bus, topic, group = bus_factory(), names("t"), names("g")
    for v in (b"a", b"b", b"c"):
        bus.publish(topic, "k", v)
    bus.flush()
    first = bus.consumer([topic], group)
    got = poll_until(first, 3)
    first.commit(got[:2])
    first.close()
    second = bus.consumer([topic], group)
    assert [m.value for m in poll_until(second, 1)] == [b"c"]
    second.close()


def test_uncommitted_messages_go_to_the_next_member(
    bus_factory: BusFactory, names: Callable[[str], str]
) -> None:
    """At-least-once: a consumer that dies before committing loses nothing."""
    bus, topic, group = bus_factory(), names("t"), names("g")
    bus.publish(topic, "k", b"a")
    bus.publish(topic, "k", b"b")
    bus.flush()
    first = bus.consumer([topic], group)
    assert len(poll_until(first, 2)) == 2
    first.close()  # no commit
    second = bus.consumer([topic], group)
    assert [m.value for m in poll_until(second, 2)] == [b"a", b"b"]
    second.close()


def test_seek_to_committed_delivers_again(bus_factory: BusFactory, names: Callable[[str], str]) -> None:
    bus, topic = bus_factory(), names("t")
    for v in (b"a", b"b", b"c"):
        bus.publish(topic, "k", v)
    bus.flush()
    consumer = bus.consumer([topic], names("g"))
    got = poll_until(consumer, 3)
    consumer.commit(got[:1])
    consumer.seek_to_committed()
    assert [m.value for m in poll_until(consumer, 2)] == [b"b", b"c"]
    consumer.close()


def test_groups_are_independent(bus_factory: BusFactory, names: Callable[[str], str]) -> None:
    bus, topic = bus_factory(), names("t")
    bus.publish(topic, "k", b"x")
    bus.flush()
    one, two = bus.consumer([topic], names("g")), bus.consumer([topic], names("g"))
    got_one = poll_until(one, 1)
    one.commit(got_one)
    assert [m.value for m in poll_until(two, 1)] == [b"x"]
    one.close()
    two.close()


def test_one_consumer_reads_several_topics(bus_factory: BusFactory, names: Callable[[str], str]) -> None:
    bus, t1, t2 = bus_factory(), names("t"), names("t")
    bus.publish(t1, "k", b"1")
    bus.publish(t2, "k", b"2")
    bus.flush()
    consumer = bus.consumer([t1, t2], names("g"))
    got = poll_until(consumer, 2)
    assert sorted((m.topic, m.value) for m in got) == [(t1, b"1"), (t2, b"2")]
    consumer.close()


def test_messages_published_before_the_group_existed_are_read(
    bus_factory: BusFactory, names: Callable[[str], str]
) -> None:
    bus, topic = bus_factory(), names("t")
    bus.publish(topic, "k", b"early")
    bus.flush()
    consumer = bus.consumer([topic], names("g"))
    assert [m.value for m in poll_until(consumer, 1)] == [b"early"]
    consumer.close()

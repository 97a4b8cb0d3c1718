"""MemoryBus details beyond the contract: partitions, group ownership, trimming, closing."""

from __future__ import annotations

import pytest

from crowdwatch.bus.memory import MemoryBus


def test_keys_map_to_stable_partitions() -> None:
    bus = MemoryBus(partitions=4)
    for i in range(40):
        bus.publish("t", f"cam-{i % 8}", b"x")
    by_key: dict[str | None, set[int]] = {}
    for m in bus.messages("t"):
        by_key.setdefault(m.key, set()).add(m.partition)
    assert all(len(parts) == 1 for parts in by_key.values())
    assert len({p for parts in by_key.values() for p in parts}) > 1
    consumer = bus.consumer(["t"], "g")
    assert len(consumer.poll(0, 100)) == 40


def test_a_partition_has_one_owner_per_group() -> None:
    bus = MemoryBus()
    bus.publish("t", "k", b"a")
    first, second = bus.consumer(["t"], "g"), bus.consumer(["t"], "g")
    assert [m.value for m in first.poll(0, 10)] == [b"a"]
    assert second.poll(0, 10) == []
    first.close()
    assert [m.value for m in second.poll(0, 10)] == [b"a"]


def test_commit_from_a_non_owner_fails() -> None:
    bus = MemoryBus()
    bus.publish("t", "k", b"a")
    first, second = bus.consumer(["t"], "g"), bus.consumer(["t"], "g")
    got = first.poll(0, 10)
    with pytest.raises(RuntimeError, match="not assigned"):
        second.commit(got)


def test_committed_offsets_are_visible() -> None:
    bus = MemoryBus()
    for v in (b"a", b"b"):
        bus.publish("t", "k", v)
    consumer = bus.consumer(["t"], "g")
    consumer.commit(consumer.poll(0, 10))
    assert bus.committed("g", "t") == 2
    assert bus.committed("other", "t") is None


def test_trimming_keeps_uncommitted_messages() -> None:
    bus = MemoryBus(max_messages_per_topic=10)
    consumer = bus.consumer(["t"], "g")
    for i in range(30):
        bus.publish("t", "k", bytes([i]))
    assert len(bus.messages("t")) == 30  # nothing committed, nothing trimmed
    got = consumer.poll(0, 100)
    consumer.commit(got[:25])
    bus.publish("t", "k", b"more")
    kept = bus.messages("t")
    assert kept[0].offset >= 20
    assert kept[-1].value == b"more"
    assert all(m.offset >= 20 for m in kept)


def test_topics_nobody_reads_keep_the_newest_messages() -> None:
    bus = MemoryBus(max_messages_per_topic=10)
    for i in range(50):
        bus.publish("dlq", "k", bytes([i]))
    kept = bus.messages("dlq")
    assert len(kept) <= 11
    assert kept[-1].value == bytes([49])


def test_closed_consumer_and_bus_refuse_work() -> None:
    bus = MemoryBus()
    consumer = bus.consumer(["t"], "g")
    consumer.close()
    consumer.close()  # idempotent
    with pytest.raises(RuntimeError, match="consumer is closed"):
        consumer.poll(0, 1)
    bus.close()
    with pytest.raises(RuntimeError, match="bus is closed"):
        bus.publish("t", "k", b"x")


def test_header_repeats_last_one_wins() -> None:
    bus = MemoryBus()
    bus.publish("t", "k", b"x", {"a": b"1"})
    (m,) = bus.messages("t")
    assert m.header("a") == b"1"
    assert m.header("missing") is None


def test_timestamp_comes_from_the_clock() -> None:
    bus = MemoryBus(clock=lambda: 123.5)
    bus.publish("t", "k", b"x")
    assert bus.messages("t")[0].timestamp == 123.5

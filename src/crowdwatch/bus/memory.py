"""In-process EventBus for embedded mode and tests. Thread-safe; Kafka's semantics in small:
per-partition append logs, consumer groups with committed offsets, one owner per partition
within a group, blocking poll on a Condition (no sleeping loop)."""

from __future__ import annotations

import itertools
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from crowdwatch.bus.base import Headers, Message

TopicPartition = tuple[str, int]


@dataclass
class _Log:
    """One partition: messages[i] has offset base + i. Trimming raises `base`."""

    base: int = 0
    messages: list[Message] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.base + len(self.messages)


@dataclass
class _Group:
    topics: set[str] = field(default_factory=set)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    owners: dict[TopicPartition, int] = field(default_factory=dict)


class MemoryBus:
    """`partitions` per topic (1 is enough in one process); `max_messages_per_topic` bounds
    memory: beyond it (plus 10 % slack), messages that every group has committed are dropped."""

    def __init__(
        self,
        *,
        partitions: int = 1,
        max_messages_per_topic: int = 1_000_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self._partitions = partitions
        self._max = max_messages_per_topic
        self._clock = clock
        self._cond = threading.Condition()
        self._logs: dict[str, dict[int, _Log]] = {}
        self._groups: dict[str, _Group] = {}
        self._ids = itertools.count(1)
        self._closed = False

    # --- producer -----------------------------------------------------------------------

    def publish(self, topic: str, key: str, value: bytes, headers: Headers | None = None) -> None:
        partition = zlib.crc32(key.encode("utf-8")) % self._partitions
        with self._cond:
            self._check_open()
            log = self._partition(topic, partition)
            log.messages.append(
                Message(
                    topic=topic,
                    partition=partition,
                    offset=log.end,
                    key=key,
                    value=bytes(value),
                    headers=tuple((headers or {}).items()),
                    timestamp=self._clock(),
                )
            )
            self._trim(topic, partition, log)
            self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> None:
        """Nothing to wait for: publish is synchronous."""

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __enter__(self) -> MemoryBus:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- introspection (tests, metrics) ---------------------------------------------------

    def messages(self, topic: str) -> list[Message]:
        """Every retained message of `topic`, by partition then offset."""
        with self._cond:
            logs = self._logs.get(topic, {})
            return [m for p in sorted(logs) for m in logs[p].messages]

    def committed(self, group: str, topic: str, partition: int = 0) -> int | None:
        with self._cond:
            g = self._groups.get(group)
            return None if g is None else g.committed.get((topic, partition))

    # --- consumer side (called by MemoryConsumer under the lock) ---------------------------

    def consumer(self, topics: Sequence[str], group: str) -> MemoryConsumer:
        with self._cond:
            self._check_open()
            self._groups.setdefault(group, _Group()).topics.update(topics)
            return MemoryConsumer(self, list(topics), group, next(self._ids))

    def _partition(self, topic: str, partition: int) -> _Log:
        parts = self._logs.get(topic)
        if parts is None:
            # Topics are created on first use, all partitions at once, as auto-create does.
            parts = self._logs[topic] = {p: _Log() for p in range(self._partitions)}
        return parts[partition]

    def _trim(self, topic: str, partition: int, log: _Log) -> None:
        excess = len(log.messages) - self._max
        # Trim in chunks of 10 %: deleting the head of a list is O(n), so not once per publish.
        if excess <= self._max // 10:
            return
        # Only what every group reading this topic has committed may go; a topic nobody reads
        # (the DLQ in embedded mode) keeps its newest messages, like Kafka retention.
        readers = [g for g in self._groups.values() if topic in g.topics]
        floor = min((g.committed.get((topic, partition), log.base) for g in readers), default=log.end)
        drop = min(excess, floor - log.base)
        if drop > 0:
            del log.messages[:drop]
            log.base += drop

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("bus is closed")


class MemoryConsumer:
    def __init__(self, bus: MemoryBus, topics: list[str], group: str, member: int) -> None:
        self._bus = bus
        self._topics = topics
        self._group = group
        self._member = member
        self._positions: dict[TopicPartition, int] = {}
        self._closed = False

    def poll(self, timeout: float, max_messages: int = 500) -> list[Message]:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._bus._cond:
            while True:
                self._check_open()
                batch = self._take(max_messages)
                remaining = deadline - time.monotonic()
                if batch or remaining <= 0:
                    return batch
                self._bus._cond.wait(remaining)

    def commit(self, messages: Sequence[Message]) -> None:
        latest: dict[TopicPartition, int] = {}
        for m in messages:
            tp = (m.topic, m.partition)
            latest[tp] = max(latest.get(tp, -1), m.offset + 1)
        with self._bus._cond:
            self._check_open()
            group = self._bus._groups[self._group]
            for tp, offset in latest.items():
                # Like Kafka, a commit from a member that no longer owns the partition fails
                # rather than rewinding or skipping the new owner's progress.
                if group.owners.get(tp) != self._member:
                    raise RuntimeError(f"{tp} is not assigned to this consumer; cannot commit")
                group.committed[tp] = offset

    def seek_to_committed(self) -> None:
        with self._bus._cond:
            self._check_open()
            committed = self._bus._groups[self._group].committed
            for tp in self._positions:
                self._positions[tp] = committed.get(tp, 0)

    def close(self) -> None:
        with self._bus._cond:
            if self._closed:
                return
            self._closed = True
            owners = self._bus._groups[self._group].owners
            for tp in self._positions:
                if owners.get(tp) == self._member:
                    del owners[tp]
            self._positions.clear()
            # Another member of the group may be waiting for these partitions.
            self._bus._cond.notify_all()

    def __enter__(self) -> MemoryConsumer:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _take(self, max_messages: int) -> list[Message]:
        self._assign()
        out: list[Message] = []
        for tp, position in self._positions.items():
            log = self._bus._logs[tp[0]][tp[1]]
            start = max(position, log.base)
            chunk = log.messages[start - log.base : start - log.base + max_messages - len(out)]
            out.extend(chunk)
            self._positions[tp] = start + len(chunk)
            if len(out) >= max_messages:
                break
        return out

    def _assign(self) -> None:
        """Claim every unowned partition of our topics; start it at the group's commit.
        (Kafka would balance partitions between members; first come is enough here.)"""
        group = self._bus._groups[self._group]
        for topic in self._topics:
            for partition in self._bus._logs.get(topic, {}):
                tp = (topic, partition)
                if tp not in group.owners:
                    group.owners[tp] = self._member
                    self._positions[tp] = group.committed.get(tp, 0)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("consumer is closed")
        self._bus._check_open()

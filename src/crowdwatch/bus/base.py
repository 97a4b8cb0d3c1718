"""The event bus seam (DESIGN 1, 6), shaped after Kafka so that a kafka-python implementation
fits: keyed messages on partitioned topics, consumer groups, offsets committed by the consumer
only after it has processed the messages (at-least-once)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

CROWD_EVENTS: Final = "crowd-events"
CAMERA_STATUS: Final = "camera-status"
CROWD_EVENTS_DLQ: Final = "crowd-events.dlq"

Headers = Mapping[str, bytes]


@dataclass(frozen=True, slots=True)
class Message:
    """One delivered record. `headers` keeps Kafka's shape (ordered pairs, names may repeat);
    `timestamp` is the publish time in epoch seconds."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp: float

    def header(self, name: str) -> bytes | None:
        """The last value of header `name` (Kafka allows repeats; the last one wins)."""
        found = None
        for k, v in self.headers:
            if k == name:
                found = v
        return found


class Consumer(Protocol):
    """A member of a consumer group. Not thread-safe: one thread polls, processes and commits."""

    def poll(self, timeout: float, max_messages: int = 500) -> list[Message]:
        """Wait up to `timeout` seconds for messages; [] when none came."""
        ...

    def commit(self, messages: Sequence[Message]) -> None:
        """Mark `messages` processed: for each partition, everything up to the highest offset
        given is committed (as in Kafka), so commit only a processed prefix."""
        ...

    def seek_to_committed(self) -> None:
        """Deliver again everything after the last commit (after a processing failure)."""
        ...

    def close(self) -> None:
        """Leave the group. Uncommitted messages go to the next member of the group."""
        ...


class EventBus(Protocol):
    def publish(self, topic: str, key: str, value: bytes, headers: Headers | None = None) -> None:
        """Queue one message; the same key always lands on the same partition (order per key)."""
        ...

    def flush(self, timeout: float = 10.0) -> None:
        """Block until every published message is acknowledged by the broker."""
        ...

    def consumer(self, topics: Sequence[str], group: str) -> Consumer: ...

    def close(self) -> None: ...

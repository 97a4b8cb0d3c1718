"""Offset commits that do not wait for the broker, finished synchronously before partitions are
given up: the usual Kafka pattern (commitAsync in the poll loop, commitSync on close and on
revocation).

A synchronous commit per batch waited ~7 ms on a local broker (Kafka 4's group coordinator
lingers 5 ms to batch its appends), a third of a batch's store time. Nothing is lost when an
asynchronous commit fails: the messages are delivered again and the store ignores what it already
holds. Commits go out in order on the coordinator's connection, so a later one is never overtaken
by an earlier one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

log = logging.getLogger(__name__)

# A synchronous finish gives up after this long (KafkaTimeoutError): closing with the broker
# down must not hang; what was not committed is delivered again.
FINISH_TIMEOUT_MS = 5_000


# Told of every failed commit: "async" (the broker's reply to `commit`) or "sync" (`settle`).
FailureHook = Callable[[str], None]


class AsyncCommits:
    """The commits of one consumer; `commit` and `finish` from its polling thread (the reply
    callback may come on kafka-python's heartbeat thread). `on_failure` hears of each failed
    commit (a metric), besides the log."""

    def __init__(self, consumer: KafkaConsumer, on_failure: FailureHook | None = None) -> None:
        self._consumer = consumer
        self._on_failure = on_failure
        self._lock = threading.Lock()
        self._unconfirmed: dict[TopicPartition, int] = {}  # asked for, broker has not confirmed

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Ask the broker to store `offsets` (per partition, the next offset to read)."""
        with self._lock:
            self._unconfirmed.update(offsets)
        self._consumer.commit_async(_metadata(offsets), callback=self._replied)

    def finish(self, partitions: Collection[TopicPartition] | None = None) -> None:
        """Commit synchronously what is not confirmed yet (of `partitions`; None: all). Raises
        what the commit raises (CommitFailedError once the group took the partitions away,
        KafkaTimeoutError after FINISH_TIMEOUT_MS)."""
        with self._lock:
            pending = {
                tp: offset
                for tp, offset in self._unconfirmed.items()
                if partitions is None or tp in partitions
            }
        if not pending:
            return
        self._consumer.commit(_metadata(pending), timeout_ms=FINISH_TIMEOUT_MS)
        self._confirm(pending)

    def settle(self, partitions: Collection[TopicPartition] | None = None, *, before: str) -> None:
        """`finish`, logging a failure instead of raising: for the moments (`before` closing,
        rewinding, giving partitions up) where nothing better can be done, and nothing is lost:
        what was not committed is delivered again."""
        try:
            self.finish(partitions)
        except Exception as exc:
            log.warning(
                "kafka: committing before %s failed (%s); those messages will be delivered again", before, exc
            )
            self._failed("sync")

    def forget(self, partitions: Collection[TopicPartition]) -> None:
        """Drop what is pending for `partitions` (lost to another member: not ours to commit)."""
        with self._lock:
            for tp in partitions:
                self._unconfirmed.pop(tp, None)

    def _replied(self, offsets: Mapping[TopicPartition, OffsetAndMetadata], reply: object) -> None:
        if isinstance(reply, BaseException):
            # Not retried: a later commit covers these offsets, and if none comes, the messages
            # are delivered again (to this member or the next) and found already stored.
            log.warning(
                "kafka: committing %s failed (%s); those messages will be delivered again",
                ", ".join(f"{tp.topic}[{tp.partition}]@{m.offset}" for tp, m in offsets.items()),
                reply,
            )
            self._failed("async")
            return
        self._confirm({tp: m.offset for tp, m in offsets.items()})

    def _failed(self, kind: str) -> None:
        if self._on_failure is not None:
            try:
                self._on_failure(kind)
            except Exception:  # a metric must not break committing
                log.exception("kafka: commit failure hook failed")

    def _confirm(self, offsets: Mapping[TopicPartition, int]) -> None:
        with self._lock:
            for tp, offset in offsets.items():
                if self._unconfirmed.get(tp) == offset:  # not overtaken by a later commit
                    del self._unconfirmed[tp]


def _metadata(offsets: Mapping[TopicPartition, int]) -> dict[TopicPartition, OffsetAndMetadata]:
    return {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()}

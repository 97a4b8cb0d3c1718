"""Asynchronous commits, finished synchronously: what is pending, what a reply confirms, what a
finish commits. A scripted consumer stands in for kafka-python's here; the real broker path is
covered by the bus contract tests (commit, close, rewind) on Kafka."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, cast

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import CommitFailedError
from kafka.structs import OffsetAndMetadata

from crowdwatch.bus.kafka_commits import AsyncCommits

A, B = TopicPartition("crowd-events", 0), TopicPartition("crowd-events", 1)
Reply = Callable[[Mapping[TopicPartition, OffsetAndMetadata], object], None]


class ScriptedConsumer:
    """Records commits; asynchronous replies are delivered when the test says."""

    def __init__(self, fail_sync: bool = False) -> None:
        self.in_flight: list[tuple[dict[TopicPartition, OffsetAndMetadata], Reply]] = []
        self.sync: list[dict[TopicPartition, int]] = []
        self.fail_sync = fail_sync

    def commit_async(self, offsets: dict[TopicPartition, OffsetAndMetadata], callback: Reply) -> None:
        self.in_flight.append((offsets, callback))

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata], timeout_ms: int) -> None:
        assert timeout_ms > 0  # a finish must not wait forever on a dead broker
        if self.fail_sync:
            raise CommitFailedError("the group rebalanced")
        self.sync.append({tp: m.offset for tp, m in offsets.items()})

    def reply(self, index: int, outcome: object = "ok") -> None:
        offsets, callback = self.in_flight[index]
        callback(offsets, outcome)


def commits_on(consumer: ScriptedConsumer) -> AsyncCommits:
    return AsyncCommits(cast(KafkaConsumer, consumer))


def test_commit_does_not_wait_and_finish_commits_what_is_unconfirmed() -> None:
    consumer = ScriptedConsumer()
    commits = commits_on(consumer)
    commits.commit({A: 10, B: 5})
    assert [{tp: m.offset for tp, m in o.items()} for o, _ in consumer.in_flight] == [{A: 10, B: 5}]
    assert consumer.sync == []
    commits.finish()
    assert consumer.sync == [{A: 10, B: 5}]
    commits.finish()  # now confirmed: nothing more to commit
    assert consumer.sync == [{A: 10, B: 5}]


@pytest.mark.parametrize(
    ("replies", "expected_finish"),
    [
        pytest.param([(0, "ok"), (1, "ok")], [], id="both confirmed"),
        pytest.param([(0, "ok")], [{A: 20}], id="the later one still in flight"),
        pytest.param([(1, "ok"), (0, "ok")], [], id="replies out of order"),
        pytest.param([(0, "ok"), (1, CommitFailedError("rebalanced"))], [{A: 20}], id="the later one failed"),
    ],
)
def test_a_reply_confirms_only_its_own_offset(
    replies: list[tuple[int, Any]], expected_finish: list[dict[TopicPartition, int]]
) -> None:
    consumer = ScriptedConsumer()
    commits = commits_on(consumer)
    commits.commit({A: 10})
    commits.commit({A: 20})
    for index, outcome in replies:
        consumer.reply(index, outcome)
    commits.finish()
    assert consumer.sync == expected_finish


def test_a_failed_commit_is_logged_and_left_for_finish(caplog: pytest.LogCaptureFixture) -> None:
    consumer = ScriptedConsumer()
    commits = commits_on(consumer)
    commits.commit({B: 7})
    with caplog.at_level(logging.WARNING, logger="crowdwatch.bus.kafka_commits"):
        consumer.reply(0, CommitFailedError("rebalanced"))
    assert "crowd-events[1]@7 failed" in caplog.text
    assert "delivered again" in caplog.text
    commits.finish()
    assert consumer.sync == [{B: 7}]


def test_finish_of_some_partitions_and_forget() -> None:
    consumer = ScriptedConsumer()
    commits = commits_on(consumer)
    commits.commit({A: 3, B: 4})
    commits.finish([B])
    assert consumer.sync == [{B: 4}]
    commits.forget([A])  # taken by another member: not ours to commit any more
    commits.finish()
    assert consumer.sync == [{B: 4}]


def test_a_failed_finish_raises_and_keeps_the_offsets() -> None:
    consumer = ScriptedConsumer(fail_sync=True)
    commits = commits_on(consumer)
    commits.commit({A: 9})
    with pytest.raises(CommitFailedError):
        commits.finish()
    consumer.fail_sync = False
    commits.finish()
    assert consumer.sync == [{A: 9}]


def test_settle_logs_a_failed_finish_instead_of_raising(caplog: pytest.LogCaptureFixture) -> None:
    consumer = ScriptedConsumer(fail_sync=True)
    commits = commits_on(consumer)
    commits.commit({A: 9})
    with caplog.at_level(logging.WARNING, logger="crowdwatch.bus.kafka_commits"):
        commits.settle(before="closing")
    assert "committing before closing failed" in caplog.text
    assert consumer.sync == []


def test_every_failed_commit_is_told_to_the_hook(caplog: pytest.LogCaptureFixture) -> None:
    consumer = ScriptedConsumer(fail_sync=True)
    told: list[str] = []
    commits = AsyncCommits(cast(KafkaConsumer, consumer), told.append)
    commits.commit({A: 1})
    commits.commit({B: 2})
    consumer.reply(0, "ok")
    consumer.reply(1, CommitFailedError("rebalanced"))
    commits.settle(before="closing")
    assert told == ["async", "sync"]

    def broken(stage: str) -> None:
        raise RuntimeError("metrics down")

    commits = AsyncCommits(cast(KafkaConsumer, consumer), broken)
    commits.commit({A: 3})
    with caplog.at_level(logging.ERROR, logger="crowdwatch.bus.kafka_commits"):
        consumer.reply(2, CommitFailedError("rebalanced"))  # a broken hook does not stop commits
    assert "hook failed" in caplog.text

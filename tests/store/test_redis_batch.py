"""A batch on Redis: one transaction that leaves exactly the keys that applying its events one
at a time leaves (less the notifications of superseded count updates), retried when another
writer got in between, and split up when that keeps happening. (The contract tests cover what
a batch returns.)"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from typing import Any

import pytest
import redis
from redis.connection import Connection

from crowdwatch.config.backends import RedisStoreConfig
from crowdwatch.core.alerts import Action
from crowdwatch.core.types import AlertState, EventType
from crowdwatch.store import redis_wire
from crowdwatch.store.base import BatchApplyError
from crowdwatch.store.redis import BATCH_ATTEMPTS, RedisAlertStore

from .conftest import open_redis_store, redis_config
from .events import T0, Decide, crowd_event
from .test_batch_contract import MIXED

pytestmark = pytest.mark.redis

GATE = "cam-1:gate:1700000000000"
UPDATED = EventType.GATHERING_UPDATED


@pytest.fixture
def stores() -> Iterator[Callable[[], RedisAlertStore]]:
    """Makes stores on one Redis, each with a prefix of its own."""
    with ExitStack() as cleanup:
        yield lambda: open_redis_store(cleanup, redis_config())


@pytest.fixture
def client(stores: Callable[[], RedisAlertStore]) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_config().url, decode_responses=True) as c:
        yield c


def snapshot(client: redis.Redis, prefix: str) -> dict[str, Any]:
    """Every key under `prefix` and what it holds; stream entries without their ids (times),
    any other key with whether it expires."""
    out: dict[str, Any] = {}
    for key in sorted(client.scan_iter(match=f"{prefix}:*")):
        name, kind = key.removeprefix(prefix), client.type(key)
        if kind == "hash":
            out[name] = client.hgetall(key)
        elif kind == "zset":
            out[name] = client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            out[name] = [fields for _, fields in client.xrange(key) or []]
        else:
            out[name] = (client.get(key), client.ttl(key) > 0)
    return out


def test_a_batch_leaves_the_keys_that_one_event_at_a_time_leaves_less_superseded_updates(
    stores: Callable[[], RedisAlertStore], client: redis.Redis
) -> None:
    batched, single = stores(), stores()
    for store in (batched, single):  # an alert stored before, so that the batch reads one
        store.apply_event(crowd_event(zone_id="early"), Decide(), T0)
    batched.apply_events(MIXED, Decide(), T0 + 1)
    for event in MIXED:
        single.apply_event(event, Decide(), T0 + 1)
    expected = snapshot(client, single.keys.prefix)
    # Less the count updates a later change of their alert supersedes in the batch (store.batch):
    # not announced on the change streams. Their audit entries are kept.
    for name in (":changes", ":stream:center:c1"):
        expected[name] = conflated(expected[name])
    assert snapshot(client, batched.keys.prefix) == expected


def conflated(entries: list[dict[str, str]]) -> list[dict[str, str]]:
    """Change-stream entries (one per change) without each `updated` one that a later entry
    of its alert follows, unless it moved the severity or ended the gathering."""
    alerts = [json.loads(e["alert"]) for e in entries]
    kept = []
    for i, (entry, alert) in enumerate(zip(entries, alerts, strict=True)):
        earlier = [a for a in alerts[:i] if a["id"] == alert["id"]]
        followed = any(a["id"] == alert["id"] for a in alerts[i + 1 :])
        figures_only = bool(earlier) and all(
            earlier[-1][f] == alert[f] for f in ("severity", "gathering_ended")
        )
        if not (entry["kind"] == "updated" and followed and figures_only):
            kept.append(entry)
    return kept


def test_a_conflicting_writer_makes_the_batch_start_again(
    stores: Callable[[], RedisAlertStore], client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = stores()
    store.apply_event(crowd_event(), Decide(), T0)  # so this store has the alert cached
    other = RedisAlertStore(client, key_prefix=store.keys.prefix)  # another worker
    reads: list[int] = []
    real = redis_wire.watch_and_read

    def read_then_interfere(
        conn: Connection, watch: Sequence[str], commands: Sequence[Any], **options: bool
    ) -> list[Any]:
        replies = real(conn, watch, commands, **options)
        reads.append(len(commands))
        if len(reads) == 1:  # the other worker changes the alert between our read and our EXEC
            other.act(GATE, Action.ACKNOWLEDGE, "op-7", T0 + 0.5)
        return replies

    monkeypatch.setattr(redis_wire, "watch_and_read", read_then_interfere)
    results = store.apply_events([crowd_event(UPDATED, seq=1, peak=40.0)], Decide(), T0 + 1)
    assert len(reads) == 2  # read again after EXEC was refused
    assert results[0] is not None
    # Planned on the other worker's write, not over it (nor on this store's cached copy).
    assert results[0].alert.state is AlertState.ACKNOWLEDGED
    assert results[0].alert.peak == 40.0
    assert store.get(GATE) == results[0].alert


def test_a_cached_alert_changed_elsewhere_is_read_again(
    stores: Callable[[], RedisAlertStore], client: redis.Redis
) -> None:
    store = stores()
    other = RedisAlertStore(client, key_prefix=store.keys.prefix)  # another worker
    store.apply_events([crowd_event()], Decide(), T0)
    other.apply_events([crowd_event(UPDATED, seq=1, count=50.0, peak=50.0)], Decide(), T0 + 1)
    other.act(GATE, Action.ACKNOWLEDGE, "op-7", T0 + 2)
    (change,) = store.apply_events([crowd_event(UPDATED, seq=2, count=45.0, peak=45.0)], Decide(), T0 + 3)
    assert change is not None
    assert change.alert.state is AlertState.ACKNOWLEDGED
    assert change.alert.peak == 50.0  # the other worker's event is kept
    assert change.alert.escalate_at is None  # acknowledged: no deadline any more
    # An event the other worker applied is not applied again by this store.
    again = crowd_event(UPDATED, seq=1, count=50.0, peak=50.0)
    assert store.apply_events([again], Decide(), T0 + 4) == [None]
    assert store.get(GATE) == change.alert


def test_a_cached_alert_removed_elsewhere_opens_anew(
    stores: Callable[[], RedisAlertStore], client: redis.Redis
) -> None:
    store = stores()
    store.apply_events([crowd_event()], Decide(), T0)
    client.delete(store.keys.alert(GATE))  # as a purge does (its record goes, with its indexes)
    (change,) = store.apply_events([crowd_event(UPDATED, seq=1)], Decide(), T0 + 1)
    assert change is not None
    assert change.kind == "created"


def test_a_batch_that_keeps_conflicting_goes_event_by_event(
    stores: Callable[[], RedisAlertStore],
    client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, reference = stores(), stores()
    conflicts: list[int] = []
    real = redis_wire.send_transaction
    first_alert = store.keys.alert(MIXED[0].episode_key)

    def conflicting(conn: Connection, writes: Sequence[Any]) -> None:
        if len(conflicts) < BATCH_ATTEMPTS:
            # Another writer touches a watched alert between the read and EXEC: a real
            # conflict (created and removed again, so what the batch reads stays the same).
            conflicts.append(len(writes))
            client.set(first_alert, "another writer")
            client.delete(first_alert)
        real(conn, writes)

    monkeypatch.setattr(redis_wire, "send_transaction", conflicting)
    with caplog.at_level(logging.INFO):
        results = store.apply_events(MIXED, Decide(), T0)
    assert len(conflicts) == BATCH_ATTEMPTS
    assert "one by one" in caplog.text
    assert results == reference.apply_events(MIXED, Decide(), T0)
    assert store.audit() == reference.audit()


def test_an_unreachable_redis_stores_nothing_of_the_batch() -> None:
    config = RedisStoreConfig(url="redis://127.0.0.1:1/0", socket_timeout_s=1.0)
    with RedisAlertStore.from_config(config) as store, pytest.raises(BatchApplyError) as failed:
        store.apply_events(MIXED, Decide(), T0)
    assert failed.value.applied == []
    assert isinstance(failed.value.cause, redis.ConnectionError)


def test_foreign_data_at_an_alerts_key_is_moved_aside_in_the_batchs_transaction(
    stores: Callable[[], RedisAlertStore], client: redis.Redis
) -> None:
    """Once refused (the batch failed on every redelivery, stopping the consumer); now kept
    aside, whole, by the transaction that writes the batch (test_redis_store has the cases)."""
    store = stores()
    event = crowd_event(zone_id="gate")
    client.set(store.keys.alert(event.episode_key), "not an alert")
    (change,) = store.apply_events([event], Decide(), T0)
    assert change is not None
    assert change.kind == "created"
    assert store.get(event.episode_key) == change.alert
    (aside,) = client.scan_iter(match=f"{store.keys.prefix}:quarantine:*")
    assert client.get(aside) == "not an alert"

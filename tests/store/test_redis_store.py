"""What only a shared store must do: several workers (store instances) on one Redis racing on
the same alerts, a restart that keeps everything, notifications across instances, expiring
dedupe marks. The contract tests (test_store_contract.py) run on Redis as well."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from functools import partial
from typing import cast

import pytest
import redis
from pydantic import SecretStr
from redis.connection import Connection

from crowdwatch.config.backends import RedisStoreConfig
from crowdwatch.core.alerts import Action, AlertChange
from crowdwatch.core.routing import RouteDecision
from crowdwatch.core.types import AlertState, CrowdEvent, EventType
from crowdwatch.store import redis_wire as wire
from crowdwatch.store.base import StoreUpdate
from crowdwatch.store.records import update_from_fields
from crowdwatch.store.redis import RedisAlertStore

from .conftest import open_redis_store, redis_config, redis_url
from .events import T0, camera_event, crowd_event
from .polling import wait_until

pytestmark = pytest.mark.redis

ALERT_ID = "cam-1:gate:1700000000000"
Workers = Callable[..., RedisAlertStore]


def route(center: str = "c1", sla_s: float = 120.0) -> Callable[[CrowdEvent], RouteDecision]:
    return lambda event: RouteDecision(center, "inside:community", sla_s)


@pytest.fixture
def config() -> RedisStoreConfig:
    return redis_config()


@pytest.fixture
def workers(config: RedisStoreConfig) -> Iterator[Workers]:
    """Makes stores on one Redis and one key prefix, as separate alerting workers would have."""
    with ExitStack() as cleanup:
        yield lambda **changes: open_redis_store(cleanup, config.model_copy(update=changes))


@pytest.fixture
def client(config: RedisStoreConfig) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(config.url, decode_responses=True) as c:
        yield c


def race(*calls: Callable[[], object]) -> list[object]:
    """Runs the calls on threads released together; their results in call order."""
    start = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # re-raised below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_two_workers_apply_the_same_event_once(workers: Workers) -> None:
    a, b = workers(), workers()
    for zone in [f"z{i}" for i in range(20)]:
        event = crowd_event(zone_id=zone)
        results = race(partial(a.apply_event, event, route(), T0), partial(b.apply_event, event, route(), T0))
        winners = [r for r in results if r is not None]
        assert len(winners) == 1, zone
        assert [e.action for e in a.audit(event.episode_key)] == ["created"]
    assert len(b.list_alerts()) == 20


def test_two_workers_fold_different_events_of_one_alert(workers: Workers) -> None:
    a, b = workers(), workers()
    a.apply_event(crowd_event(), route(), T0)
    updates = [crowd_event(EventType.GATHERING_UPDATED, seq=i, count=30.0 + i) for i in range(1, 21)]
    race(
        lambda: [a.apply_event(e, route(), T0 + 1) for e in updates[0::2]],
        lambda: [b.apply_event(e, route(), T0 + 1) for e in updates[1::2]],
    )
    alert = a.get(ALERT_ID)
    assert alert is not None
    # Each update either applied or came too late (an out-of-order seq): never lost in a race.
    assert alert.last_event_seq == 20
    applied = [e for e in a.audit(ALERT_ID) if e.action == EventType.GATHERING_UPDATED.value]
    assert 1 <= len(applied) <= 20


def test_two_workers_escalate_the_same_alert_once(workers: Workers) -> None:
    a, b = workers(), workers()
    for zone in [f"z{i}" for i in range(20)]:
        a.apply_event(crowd_event(zone_id=zone), route(), T0)
    for due in b.due_escalations(T0 + 500):
        results = race(
            partial(a.escalate, due.id, "s1", T0 + 500, 300.0),
            partial(b.escalate, due.id, "s1", T0 + 500, 300.0),
        )
        assert len([r for r in results if r is not None]) == 1
        alert = a.get(due.id)
        assert alert is not None
        assert (alert.center_id, alert.escalation_level, alert.escalate_at) == ("s1", 1, T0 + 800)
    assert len(a.list_alerts(center_id="s1")) == 20
    assert a.list_alerts(center_id="c1") == []
    assert a.due_escalations(T0 + 799) == []


def test_acknowledge_racing_escalation_leaves_a_consistent_alert(workers: Workers) -> None:
    a, b = workers(), workers()
    for zone in [f"z{i}" for i in range(20)]:
        a.apply_event(crowd_event(zone_id=zone), route(), T0)
    for due in a.due_escalations(T0 + 500):
        escalated, _ = race(
            partial(a.escalate, due.id, "s1", T0 + 500, 300.0),
            partial(b.act, due.id, Action.ACKNOWLEDGE, "op", T0 + 500),
        )
        alert = a.get(due.id)
        assert alert is not None
        assert (alert.state, alert.escalate_at) == (AlertState.ACKNOWLEDGED, None)
        # Escalated only when it came first: then the acknowledgement happened at s1.
        assert alert.center_id == ("c1" if escalated is None else "s1")
    assert a.due_escalations(T0 + 10**6) == []


def test_a_restarted_store_sees_everything(workers: Workers) -> None:
    first = workers()
    first.apply_event(crowd_event(), route(), T0)
    first.apply_event(crowd_event(zone_id="exit", density_per_m2=2.5), route(sla_s=60), T0)
    first.apply_event(crowd_event(zone_id="side"), route(center="c2"), T0 + 1)
    first.act(ALERT_ID, Action.ACKNOWLEDGE, "op-anna", T0 + 2)
    first.act(ALERT_ID, Action.DISPATCH, "op-anna", T0 + 3, unit="van-3", note="north gate")
    first.act("cam-1:side:1700000000000", Action.RESOLVE, "op-bert", T0 + 4)
    first.escalate("cam-1:exit:1700000000000", "s1", T0 + 100, 300.0)
    first.record_camera_status(camera_event(ts=T0 + 5))
    before = (
        first.list_alerts(open_only=False),
        first.list_alerts(),
        first.list_alerts(center_id="s1"),
        first.audit(),
        first.due_escalations(T0 + 10**6),
        first.camera_statuses(),
    )
    first.close()

    second = workers()
    after = (
        second.list_alerts(open_only=False),
        second.list_alerts(),
        second.list_alerts(center_id="s1"),
        second.audit(),
        second.due_escalations(T0 + 10**6),
        second.camera_statuses(),
    )
    assert after == before
    assert len(after[0]) == 3
    assert second.apply_event(crowd_event(), route(), T0 + 6) is None  # still deduplicated
    assert second.act(ALERT_ID, Action.RESOLVE, "op-anna", T0 + 7).alert.state is AlertState.RESOLVED


def test_subscribe_delivers_changes_of_another_worker(workers: Workers) -> None:
    console, worker = workers(), workers()
    worker.apply_event(crowd_event(zone_id="before"), route(), T0)  # before subscribing: not seen
    seen: list[StoreUpdate] = []
    unsubscribe = console.subscribe(seen.append)
    made: list[StoreUpdate] = []
    created = worker.apply_event(crowd_event(), route(), T0)
    assert created is not None
    made.append(created)
    made.append(worker.act(ALERT_ID, Action.ACKNOWLEDGE, "op", T0 + 1))
    status = camera_event(ts=T0 + 2)
    assert worker.record_camera_status(status)
    made.append(status)
    wait_until(lambda: len(seen) >= 3, "three updates from the other worker")
    assert seen == made
    unsubscribe()


def test_a_listener_may_unsubscribe_itself(workers: Workers) -> None:
    store = workers()
    seen: list[StoreUpdate] = []
    witness: list[StoreUpdate] = []

    def once(update: StoreUpdate) -> None:
        seen.append(update)
        unsubscribe()

    unsubscribe = store.subscribe(once)
    store.subscribe(witness.append)
    store.apply_event(crowd_event(), route(), T0)
    store.act(ALERT_ID, Action.ACKNOWLEDGE, "op", T0 + 1)
    wait_until(lambda: len(witness) == 2, "both changes")
    assert [u.kind for u in seen if isinstance(u, AlertChange)] == ["created"]


def test_subscribe_again_after_the_last_unsubscribe(workers: Workers) -> None:
    store = workers()
    first: list[StoreUpdate] = []
    store.subscribe(first.append)()
    second: list[StoreUpdate] = []
    unsubscribe = store.subscribe(second.append)
    store.apply_event(crowd_event(), route(), T0)
    wait_until(lambda: len(second) == 1, "the change")
    assert first == []
    unsubscribe()


def test_event_dedupe_marks_expire(workers: Workers, client: redis.Redis) -> None:
    store = workers(event_dedupe_ttl_s=600)
    store.apply_event(crowd_event(), route(), T0)
    store.apply_event(crowd_event(EventType.GATHERING_UPDATED, seq=3), route(), T0 + 1)
    store.apply_event(crowd_event(EventType.GATHERING_UPDATED, seq=2), route(), T0 + 2)  # stale
    assert marks(client, store) == {crowd_event(seq=s).id: T0 + i for i, s in enumerate((0, 3, 2))}
    # The TTL later, the next batch forgets them (a mark at exactly the TTL is gone, as in
    # memory); the alert's own last seq still keeps a late duplicate out.
    assert store.apply_event(crowd_event(EventType.GATHERING_UPDATED, seq=3), route(), T0 + 601) is None
    assert marks(client, store) == {crowd_event(seq=2).id: T0 + 2, crowd_event(seq=3).id: T0 + 601}


def marks(client: redis.Redis, store: RedisAlertStore) -> dict[str, float]:
    """The dedupe marks: event id -> when applied."""
    reply = cast(list[tuple[str, float]], client.zrange(store.keys.applied, 0, -1, withscores=True))
    return dict(reply)


def test_a_mark_past_the_ttl_counts_as_gone_before_its_removal(workers: Workers, client: redis.Redis) -> None:
    """The marks are removed by the writes of a batch; the batch's read already ignores those
    past the TTL. A purged alert's first event, marked long ago, then opens it again."""
    store = workers(event_dedupe_ttl_s=600)
    first = crowd_event()
    client.zadd(store.keys.applied, {first.id: T0 - 600})
    change = store.apply_event(first, route(), T0)
    assert change is not None
    assert change.kind == "created"
    assert client.zscore(store.keys.applied, first.id) == T0
    assert store.apply_event(first, route(), T0 + 599) is None  # within the TTL: a duplicate


def test_center_streams_carry_the_changes(workers: Workers, client: redis.Redis) -> None:
    store = workers()
    created = store.apply_event(crowd_event(), route(), T0)
    escalated = store.escalate(ALERT_ID, "s1", T0 + 500, 300.0)

    def stream(center: str) -> list[StoreUpdate]:
        entries = client.xrange(store.keys.center_stream(center)) or []
        return [update_from_fields(cast(dict[str, str], fields)) for _, fields in entries]

    assert stream("c1") == [created, escalated]  # the center it left sees it go
    assert stream("s1") == [escalated]


def test_change_streams_are_trimmed_but_audit_is_not_by_length(workers: Workers, client: redis.Redis) -> None:
    store = workers(stream_maxlen=100)
    store.apply_event(crowd_event(), route(), T0)
    for seq in range(1, 1000):
        store.apply_event(crowd_event(EventType.GATHERING_UPDATED, seq=seq), route(), T0 + seq)
    assert client.xlen(store.keys.changes) < 500  # "~": trimmed by whole nodes, about 100 kept
    assert client.xlen(store.keys.center_stream("c1")) < 500
    assert len(store.audit(ALERT_ID)) == 1000


def test_escalation_index_follows_the_alert(workers: Workers, client: redis.Redis) -> None:
    store = workers()
    store.apply_event(crowd_event(), route(), T0)
    assert client.zscore(store.keys.escalations, ALERT_ID) == T0 + 120
    store.act(ALERT_ID, Action.ACKNOWLEDGE, "op", T0 + 1)
    assert client.zscore(store.keys.escalations, ALERT_ID) is None
    store.act(ALERT_ID, Action.RESOLVE, "op", T0 + 2)
    assert client.zrange(store.keys.open, 0, -1) == []
    assert client.zrange(store.keys.center_open("c1"), 0, -1) == []
    assert client.zrange(store.keys.center_all("c1"), 0, -1) == [ALERT_ID]


def test_purge_leaves_no_key_of_the_alert_behind(workers: Workers, client: redis.Redis) -> None:
    store = workers(resolved_retention_s=60.0)
    keeper = workers()
    store.apply_event(crowd_event(), route(), T0)
    store.escalate(ALERT_ID, "s1", T0 + 500, 300.0)  # now at s1: indexes of two centers
    store.act(ALERT_ID, Action.RESOLVE, "op", T0 + 501)
    assert client.zscore(store.keys.resolved, ALERT_ID) == T0 + 501
    assert keeper.purge(T0 + 10_000) == 0  # no retention set: this worker keeps everything
    assert store.purge(T0 + 561) == 1
    left = {k for k in client.scan_iter(match=f"{store.keys.prefix}:*") if ALERT_ID in k}
    assert left == set()
    # The dedupe mark of its event stays until its TTL: meanwhile it keeps a late redelivery
    # from opening the alert again.
    assert client.zscore(store.keys.applied, crowd_event().id) == T0
    for index in ("alerts", "open", "escalations", "resolved"):
        assert client.zscore(getattr(store.keys, index), ALERT_ID) is None, index
    for center in ("c1", "s1"):
        assert client.zrange(store.keys.center_all(center), 0, -1) == [], center
    # Change streams are not audit: they keep their entries (trimmed by length only).
    assert client.xlen(store.keys.changes) == 3


def test_a_client_with_bytes_and_resp3_works() -> None:
    """The store's own clients decode responses and speak RESP2; a caller's may do neither."""
    with (
        redis.Redis.from_url(redis_url(), protocol=3) as raw,
        RedisAlertStore(raw, key_prefix=f"cwtest-{uuid.uuid4().hex}") as store,
    ):
        try:
            change = store.apply_event(crowd_event(), route(), T0)
            assert change is not None
            assert store.get(ALERT_ID) == change.alert
            assert store.list_alerts() == [change.alert]
            assert store.audit() == list(change.audit)
            assert store.record_camera_status(camera_event())
            assert store.camera_statuses() == [camera_event()]
            seen: list[StoreUpdate] = []
            store.subscribe(seen.append)
            store.act(ALERT_ID, Action.ACKNOWLEDGE, "op", T0 + 1)
            wait_until(lambda: len(seen) == 1, "the acknowledgement")
            batch = [crowd_event(EventType.GATHERING_UPDATED, seq=1), crowd_event(zone_id="exit")]
            assert [c.kind for c in store.apply_events(batch, route(), T0 + 2) if c] == ["updated", "created"]
        finally:
            keys = list(raw.scan_iter(match=f"{store.keys.prefix}:*"))
            if keys:
                raw.delete(*keys)


def test_listener_survives_a_dropped_connection(workers: Workers, client: redis.Redis) -> None:
    store = workers()
    seen: list[StoreUpdate] = []
    unsubscribe = store.subscribe(seen.append)
    first = store.apply_event(crowd_event(), route(), T0)
    wait_until(lambda: len(seen) == 1, "the first change")
    name = f"crowdwatch-listener:{store.keys.prefix}:"
    (listener,) = [c for c in client.client_list() if c["name"].startswith(name)]
    client.client_kill_filter(_id=listener["id"])  # what a Redis restart or a network cut does
    second = store.act(ALERT_ID, Action.ACKNOWLEDGE, "op", T0 + 1)
    wait_until(lambda: len(seen) == 2, "the change after the reconnect")
    assert seen == [first, second]
    unsubscribe()
    wait_until(
        lambda: not [c for c in client.client_list() if c["name"].startswith(name)], "the listener to go"
    )


def test_acl_user_limited_to_its_prefix(config: RedisStoreConfig, client: redis.Redis) -> None:
    """Credentials from the config; the store touches only keys under its prefix."""
    user, password = f"cwtest-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    client.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=[f"{config.key_prefix}:*"], commands=["+@all"]
    )
    try:
        limited = config.model_copy(update={"username": user, "password": SecretStr(password)})
        with ExitStack() as cleanup:
            store = open_redis_store(cleanup, limited)
            seen: list[StoreUpdate] = []
            store.subscribe(seen.append)
            store.apply_event(crowd_event(), route(), T0)
            store.act(ALERT_ID, Action.ACKNOWLEDGE, "op", T0 + 1)
            store.record_camera_status(camera_event())
            assert [a.id for a in store.list_alerts()] == [ALERT_ID]
            wait_until(lambda: len(seen) == 3, "three updates")
        wrong = config.model_copy(update={"username": user, "password": SecretStr("nope")})
        with pytest.raises(redis.AuthenticationError), RedisAlertStore.from_config(wrong) as store:
            store.get(ALERT_ID)
    finally:
        client.acl_deluser(user)


def test_purge_is_not_upset_by_changes_to_other_resolved_alerts(
    workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker folds an event into an unrelated resolved alert (an episode that goes on)
    between every read and write of the purge: the purge still succeeds (it once watched the
    whole resolved index, which that change rewrites, and gave up after MAX_ATTEMPTS)."""
    purger, other = workers(resolved_retention_s=60.0), workers()
    purger.apply_event(crowd_event(), route(), T0)
    purger.act(ALERT_ID, Action.RESOLVE, "op", T0 + 1)
    busy = crowd_event(camera_id="cam-busy")
    other.apply_event(busy, route(), T0 + 500)
    other.act(busy.episode_key, Action.RESOLVE, "op", T0 + 501)
    seq = iter(range(1, 1000))
    real = wire.watch_and_read

    def meanwhile(
        conn: Connection, watch: Sequence[str], reads: Sequence[wire.Command], **options: bool
    ) -> list[object]:
        replies = real(conn, watch, reads, **options)
        if reads and reads[0][:2] == ("ZMSCORE", purger.keys.resolved):  # the purge's read
            n = next(seq)
            event = crowd_event(EventType.GATHERING_UPDATED, seq=n, camera_id="cam-busy")
            other.apply_event(event, route(), T0 + 502 + n)  # a later change each time
        return replies

    monkeypatch.setattr(wire, "watch_and_read", meanwhile)
    assert purger.purge(T0 + 100) == 1
    assert purger.get(ALERT_ID) is None
    assert other.get(busy.episode_key) is not None


def test_close_first_hands_on_the_changes_committed_before(workers: Workers) -> None:
    """A role stops right after its last batch: the events log (a listener) once lost the
    changes its reader had not read yet."""
    store = workers()
    heard: list[StoreUpdate] = []
    store.subscribe(heard.append)
    events = [crowd_event(zone_id=f"z{i}") for i in range(500)]
    made = [c for c in store.apply_events(events, route(), T0) if c is not None]
    store.close()
    assert len(made) == 500
    assert len(heard) == 500


# --- unreadable records ---------------------------------------------------------------------

UPDATED = EventType.GATHERING_UPDATED


def _spoil_as_hash(client: redis.Redis, key: str) -> None:
    client.delete(key)
    client.hset(key, mapping={"format": "9", "id": ALERT_ID, "count": "many"})


def _spoil_as_string(client: redis.Redis, key: str) -> None:
    client.delete(key)
    client.set(key, "not an alert")


def _spoil_a_version_field(client: redis.Redis, key: str) -> None:
    client.hset(key, "last_event_seq", "three")  # the cached copy no longer matches


def _spoil_with_bytes_that_are_not_text(client: redis.Redis, key: str) -> None:
    client.hset(key, "route_reason", b"\xff\xfe")


def _spoil_the_id(client: redis.Redis, key: str) -> None:
    client.hset(key, "id", "someone-else")


@pytest.mark.parametrize(
    ("spoil", "cached"),
    [
        (_spoil_as_hash, True),
        (_spoil_as_hash, False),
        (_spoil_as_string, True),
        (_spoil_a_version_field, True),  # the cached copy no longer matches: read whole
        # A worker holding the alert would write over these (its copy's version still
        # matches); one that just started reads them.
        (_spoil_with_bytes_that_are_not_text, False),
        (_spoil_the_id, False),
    ],
)
def test_an_unreadable_record_is_moved_aside_and_the_batch_goes_on(
    workers: Workers,
    client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    spoil: Callable[..., None],
    cached: bool,
) -> None:
    """A record the store cannot read (written by something else, or damaged) once failed
    every batch that touched it, on every redelivery: the consumer stopped for good."""
    writer = workers()
    writer.apply_event(crowd_event(), route(), T0)
    store = writer if cached else workers()
    spoil(client, store.keys.alert(ALERT_ID))
    before = client.dump(store.keys.alert(ALERT_ID))
    old_audit = client.xrange(store.keys.alert_audit(ALERT_ID))
    other = crowd_event(zone_id="exit")
    with caplog.at_level("ERROR", logger="crowdwatch.store.redis"):
        results = store.apply_events([crowd_event(UPDATED, seq=3), other], route(), T0 + 1)
    assert [r.kind if r else None for r in results] == ["created", "created"]
    reopened = results[0]
    assert reopened is not None
    assert reopened.alert.last_event_seq == 3
    assert "the started event was not seen" in reopened.audit[0].note
    assert store.get(ALERT_ID) == reopened.alert
    assert store.get(other.episode_key) is not None
    # Nothing lost: the old record is kept whole under a quarantine key, and said where.
    aside, audit_aside = sorted(str(k) for k in client.keys(f"{store.keys.prefix}:quarantine:{ALERT_ID}:*"))
    assert client.dump(aside) == before
    assert (audit_aside, client.xrange(audit_aside)) == (f"{aside}:audit", old_audit)
    assert store.audit(ALERT_ID) == list(reopened.audit)  # the new alert's trail is its own
    assert f"the record of alert {ALERT_ID} cannot be read" in caplog.text
    assert aside in caplog.text
    # Another worker, which never cached it, reads the new record.
    assert workers().get(ALERT_ID) == reopened.alert


@pytest.mark.parametrize("others", [[], [crowd_event(zone_id="exit")]])
def test_an_unreadable_record_no_event_changes_stays_where_it_is(
    workers: Workers, client: redis.Redis, others: list[CrowdEvent]
) -> None:
    """A redelivery alone changes nothing, in a batch of its own or beside other events."""
    store = workers()
    store.apply_event(crowd_event(), route(), T0)
    _spoil_as_hash(client, store.keys.alert(ALERT_ID))
    results = store.apply_events([crowd_event(), *others], route(), T0 + 1)
    assert [r.kind if r else None for r in results] == [None] + ["created"] * len(others)
    assert client.hget(store.keys.alert(ALERT_ID), "format") == "9"
    assert client.keys(f"{store.keys.prefix}:quarantine:*") == []


def test_a_restarted_alert_is_not_purged_for_the_resolved_one_it_replaced(
    workers: Workers, client: redis.Redis
) -> None:
    """The old alert's index entries go with its record: the new, open alert is not taken for
    a resolved one past its retention."""
    store = workers(resolved_retention_s=60.0)
    store.apply_event(crowd_event(), route(), T0)
    store.act(ALERT_ID, Action.RESOLVE, "op", T0 + 1)
    _spoil_as_hash(client, store.keys.alert(ALERT_ID))
    (reopened,) = store.apply_events([crowd_event(EventType.GATHERING_UPDATED, seq=3)], route(), T0 + 2)
    assert reopened is not None
    assert reopened.alert.is_open
    assert client.zscore(store.keys.resolved, ALERT_ID) is None
    assert store.purge(T0 + 10_000) == 0
    assert store.get(ALERT_ID) == reopened.alert
    assert [a.id for a in store.list_alerts(center_id="c1")] == [ALERT_ID]

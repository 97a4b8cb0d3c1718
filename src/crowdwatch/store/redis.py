"""AlertStore on Redis, shared by several alerting workers (DESIGN 1, 5, 6).

Every method is one atomic step. Alert changes are optimistic transactions: WATCH the alert, read
it (and the event's dedupe mark), let the pure lifecycle (`core.alerts`) decide, then write the
alert, its indexes, its audit entries and its change notifications in one MULTI/EXEC; a WatchError
means another worker changed the alert meanwhile, so the step starts again from a fresh read.
Events go the same way in batches (`apply_events`, `apply_event` being a batch of one): WATCH and
every read in one round trip, the plan of `store.batch` (the same as the memory store's), every
write in a second (`store.redis_wire`, `store.redis_writes`); `submit_events` returns once the
writes are sent, so the caller works while Redis runs them. The alerts a store wrote or read are
cached (`store.alert_cache`): a batch reads a cached alert's version fields only
(`records.VERSION_FIELDS`, which every change of an alert moves) and the whole record when they
differ. So records are written by stores only: an edit by hand that leaves those fields alone
goes unseen by a store holding the alert (and is overwritten by its next write). Camera status is
a compare-and-set, done by a small Lua script.

Keys, under a configurable prefix `P` (default `cw`):

    P:alert:{id}            hash    the alert (`store.records`)
    P:alerts                zset    every alert, score created_at
    P:open                  zset    open alerts, score created_at
    P:center:{c}:all        zset    alerts now at center c, score created_at
    P:center:{c}:open       zset    open alerts now at center c, score created_at
    P:escalations           zset    alerts waiting for an acknowledgement, score escalate_at
    P:resolved              zset    resolved alerts, score their last change (for `purge`)
    P:applied               zset    event ids applied (dedupe), score the store's time then; those
                                    older than event_dedupe_ttl_s are ignored and removed
    P:audit                 stream  the all-alerts audit: openings, operator actions, escalations
                                    (`AlertChange.in_all_alerts_audit`), in commit order (trimmed
                                    only by `purge`)
    P:audit:{alert id}      stream  every audit entry of one alert (removed with the alert)
    P:changes               stream  every alert change and camera status (MAXLEN ~)
    P:stream:center:{c}     stream  alert changes of center c (before and after an escalation)
    P:quarantine:{id}:{tag} any     an alert record that could not be read, moved aside when an
                                    event came for it (the alert then starts again); kept for a
                                    person to look at
    P:cameras               hash    camera id -> latest status (CloudEvents JSON)
    P:camera-ts             hash    camera id -> time of that status (for the comparison)

Single Redis (or a primary with replicas/Sentinel): the transactions span several keys, which
Redis Cluster would only allow with hash tags.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Self, TypeVar

import redis
from redis.client import Pipeline
from redis.connection import Connection
from redis.exceptions import RedisError, ResponseError, WatchError

from crowdwatch.config.backends import RedisStoreConfig
from crowdwatch.core import alerts as lifecycle
from crowdwatch.core import codec
from crowdwatch.core.alerts import Action, AlertChange
from crowdwatch.core.routing import RouteDecision
from crowdwatch.core.types import Alert, AuditEntry, CameraStatusEvent, CrowdEvent
from crowdwatch.store import redis_wire as wire
from crowdwatch.store.alert_cache import AlertCache, Version
from crowdwatch.store.base import (
    AlertNotFoundError,
    BatchApplyError,
    Listener,
    PendingEvents,
    RouteFn,
    StoreUpdate,
    apply_each,
)
from crowdwatch.store.batch import BatchPlan, plan_batch
from crowdwatch.store.records import (
    VERSION_FIELDS,
    RecordError,
    alert_from_fields,
    audit_from_fields,
    camera_status_from_json,
    update_from_fields,
    update_to_fields,
)
from crowdwatch.store.redis_keys import RedisKeys
from crowdwatch.store.redis_writes import batch_commands, change_commands

log = logging.getLogger(__name__)

_T = TypeVar("_T")
# Optimistic transactions retry on conflict; every retry means another worker committed, so this
# is only reached by a livelock (or a bug), and then failing loudly beats spinning forever.
MAX_ATTEMPTS: Final = 100
# A batch conflicts when any one of its alerts changed meanwhile (another worker, a rebalance):
# after a few tries it goes event by event, each event with MAX_ATTEMPTS of its own.
BATCH_ATTEMPTS: Final = 5
# How long one XREAD of the listener thread blocks; unsubscribe wakes it at once (CLIENT UNBLOCK).
READ_BLOCK_MS: Final = 1000
READ_BATCH: Final = 100
READ_TIMEOUT_S: Final = READ_BLOCK_MS / 1000 + 10
# Alerts removed per purge transaction: bounds how long one holds Redis.
PURGE_CHUNK: Final = 200
_RECONNECT_BACKOFF_S: Final = (0.1, 0.2, 0.5, 1.0, 2.0)

# KEYS: cameras hash, camera-ts hash, changes stream.
# ARGV: camera id, ts (repr), status JSON, stream maxlen, then the stream entry's field/value pairs.
_CAMERA_STATUS_LUA: Final = """
local kept = redis.call('HGET', KEYS[2], ARGV[1])
if kept and tonumber(kept) > tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, 5))
return 1
"""


class StoreConflictError(RuntimeError):
    """An optimistic transaction lost to other writers MAX_ATTEMPTS times in a row."""


def client_from_config(config: RedisStoreConfig) -> redis.Redis:
    """A client for `config`: TLS for rediss:// URLs, credentials from the config."""
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": config.socket_timeout_s,
        "socket_connect_timeout": config.socket_timeout_s,
        "health_check_interval": 30,
    }
    if config.username is not None:
        options["username"] = config.username
    if config.password is not None:
        options["password"] = config.password.get_secret_value()
    if config.url.startswith("rediss://"):
        options["ssl_ca_certs"] = config.ssl_ca_certs
        options["ssl_certfile"] = config.ssl_certfile
        options["ssl_keyfile"] = config.ssl_keyfile
    return redis.Redis.from_url(config.url, **options)


class RedisAlertStore:
    def __init__(
        self,
        client: redis.Redis,
        *,
        key_prefix: str = "cw",
        event_dedupe_ttl_s: int = 7 * 24 * 3600,
        stream_maxlen: int = 10_000,
        resolved_retention_s: float | None = None,
        owns_client: bool = False,
    ) -> None:
        """`client` may decode responses or not; `owns_client`: close() closes it too.
        `resolved_retention_s`: how long `purge` keeps resolved alerts; None keeps all."""
        if resolved_retention_s is not None and resolved_retention_s <= 0:
            raise ValueError(f"resolved_retention_s must be positive, got {resolved_retention_s}")
        self._client = client
        self._keys = RedisKeys(key_prefix)
        self._dedupe_ttl_s = event_dedupe_ttl_s
        self._maxlen = stream_maxlen
        self._retention_s = resolved_retention_s
        self._owns_client = owns_client
        self._camera_script = client.register_script(_CAMERA_STATUS_LUA)
        # The alerts this store last wrote or read: a batch checks them by their version fields.
        self._cache = AlertCache()
        # Guards the listeners and the reader; held while the reader delivers an update, so that
        # (un)subscribing takes effect between two updates. Re-entrant: a listener may subscribe.
        self._listen_lock = threading.RLock()
        self._subscriptions: list[_Subscription] = []
        self._reader: _ChangeReader | None = None
        self._stopping: list[_ChangeReader] = []  # unsubscribed, perhaps still running

    @classmethod
    def from_config(cls, config: RedisStoreConfig) -> Self:
        return cls(
            client_from_config(config),
            key_prefix=config.key_prefix,
            event_dedupe_ttl_s=config.event_dedupe_ttl_s,
            stream_maxlen=config.stream_maxlen,
            resolved_retention_s=config.resolved_retention_s,
            owns_client=True,
        )

    @property
    def keys(self) -> RedisKeys:
        return self._keys

    # --- alert changes ----------------------------------------------------------------------

    def apply_event(self, event: CrowdEvent, decide: RouteFn, now: float) -> AlertChange | None:
        # Routed once, even when the transaction retries.
        results, failure = self._apply_batch([event], _routed_once(decide), now, MAX_ATTEMPTS)
        if failure is not None:
            raise failure  # nothing was written: a retry starts afresh
        return results[0]

    def apply_events(
        self, events: Sequence[CrowdEvent], decide: RouteFn, now: float
    ) -> list[AlertChange | None]:
        """One optimistic transaction for the whole batch: WATCH its alerts, read them and the
        events' dedupe marks in one round trip, plan with `store.batch`, write everything in one
        MULTI/EXEC. After BATCH_ATTEMPTS conflicts, event by event (each with its own retries)."""
        return self.submit_events(events, decide, now).result()

    def submit_events(self, events: Sequence[CrowdEvent], decide: RouteFn, now: float) -> PendingEvents:
        """`apply_events` up to sending its MULTI/EXEC: Redis runs the transaction while the
        caller works, and `result()` reads its reply (retrying on a conflict)."""
        return _PendingBatch(self, events, _routed_once(decide), now)  # routed once across attempts

    def act(
        self,
        alert_id: str,
        action: Action,
        actor: str,
        now: float,
        *,
        unit: str | None = None,
        note: str = "",
    ) -> AlertChange:
        alert_key = self._keys.alert(alert_id)

        def step(pipe: Pipeline) -> tuple[AlertChange, _Writer]:
            current = _require(_read_alert(pipe, alert_key), alert_id)
            change = lifecycle.act(current, action, actor, now, unit=unit, note=note)
            return change, lambda tx: self._write_change(tx, current, change)

        return self._transact([alert_key], step)

    def due_escalations(self, now: float) -> list[Alert]:
        ids = _texts(self._client.zrangebyscore(self._keys.escalations, "-inf", now))
        # Re-checked on the alert itself: the index may lag a change made meanwhile.
        due = [a for a in self._read_alerts(ids) if lifecycle.is_due(a, now)]
        return sorted(due, key=lambda a: (a.escalate_at or 0.0, a.id))

    def escalate(
        self, alert_id: str, parent_id: str | None, now: float, sla_s: float | None
    ) -> AlertChange | None:
        alert_key = self._keys.alert(alert_id)

        def step(pipe: Pipeline) -> tuple[AlertChange | None, _Writer | None]:
            current = _require(_read_alert(pipe, alert_key), alert_id)
            # Acknowledged meanwhile, or another worker escalated it first.
            if not lifecycle.is_due(current, now):
                return None, None
            change = lifecycle.escalate(current, parent_id, now, sla_s)
            return change, lambda tx: self._write_change(tx, current, change)

        return self._transact([alert_key], step)

    def purge(self, now: float) -> int:
        """In chunks of PURGE_CHUNK alerts, each an optimistic transaction (an alert that changed
        meanwhile is read again); then the all-alerts audit stream is trimmed by stream id, which
        is Redis's clock."""
        if self._retention_s is None:
            return 0
        k, horizon = self._keys, now - self._retention_s
        removed = 0
        while ids := _texts(self._client.zrangebyscore(k.resolved, "-inf", horizon, 0, PURGE_CHUNK)):
            removed += self._purge_chunk(ids, horizon)
        self._client.xtrim(k.audit, minid=f"{max(int(horizon * 1000), 0)}-0", approximate=False)
        return removed

    def _purge_chunk(self, ids: list[str], horizon: float) -> int:
        k = self._keys
        alert_keys = [k.alert(a) for a in ids]
        reads: list[wire.Command] = [("ZMSCORE", k.resolved, *ids), *(("HGETALL", key) for key in alert_keys)]
        with wire.connection(self._client) as conn:
            for _ in range(MAX_ATTEMPTS):
                # The alerts only, not the resolved index: every change to a resolved alert
                # that is still gathering rewrites the index, so watching it made a purge fail
                # whenever any other alert changed. A score moves only with its alert's record.
                scores, *rows = wire.watch_and_read(conn, alert_keys, reads)
                writes: list[wire.Command] = []
                gone = 0
                for alert_id, score, row in zip(ids, scores, rows, strict=True):
                    if score is None or float(score) > horizon:
                        continue  # another worker purged it meanwhile
                    writes.append(("ZREM", k.resolved, alert_id))
                    alert = _alert_or_none(_hash_reply(row))
                    if alert is None:
                        continue
                    gone += 1
                    writes += [
                        ("DEL", k.alert(alert_id), k.alert_audit(alert_id)),
                        ("ZREM", k.alerts, alert_id),
                        ("ZREM", k.open, alert_id),
                        ("ZREM", k.escalations, alert_id),
                        ("ZREM", k.center_all(alert.center_id), alert_id),
                        ("ZREM", k.center_open(alert.center_id), alert_id),
                    ]
                if not writes:
                    wire.unwatch(conn)
                    return 0
                if wire.execute(conn, writes):
                    return gone
        raise StoreConflictError(f"gave up after {MAX_ATTEMPTS} conflicting purges of {len(ids)} alerts")

    # --- reads ------------------------------------------------------------------------------

    def get(self, alert_id: str) -> Alert | None:
        return _alert_or_none(_text_map(self._client.hgetall(self._keys.alert(alert_id))))

    def list_alerts(self, center_id: str | None = None, open_only: bool = True) -> list[Alert]:
        k = self._keys
        if center_id is None:
            index = k.open if open_only else k.alerts
        else:
            index = k.center_open(center_id) if open_only else k.center_all(center_id)
        ids = _texts(self._client.zrange(index, 0, -1))
        # Filtered again on the alerts themselves: one may have moved since the index was read.
        found = [
            a
            for a in self._read_alerts(ids)
            if (center_id is None or a.center_id == center_id) and (a.is_open or not open_only)
        ]
        return sorted(found, key=lambda a: (a.created_at, a.id))

    def audit(self, alert_id: str | None = None) -> list[AuditEntry]:
        key = self._keys.audit if alert_id is None else self._keys.alert_audit(alert_id)
        return [audit_from_fields(fields) for _, fields in _entries(self._client.xrange(key))]

    # --- cameras ----------------------------------------------------------------------------

    def record_camera_status(self, event: CameraStatusEvent) -> bool:
        k = self._keys
        status = codec.encode(event).decode("utf-8")
        entry = [x for pair in update_to_fields(event).items() for x in pair]
        kept = self._camera_script(
            keys=[k.cameras, k.camera_ts, k.changes],
            args=[event.camera_id, repr(event.ts), status, self._maxlen, *entry],
        )
        return bool(kept)

    def camera_statuses(self) -> list[CameraStatusEvent]:
        kept = _text_map(self._client.hgetall(self._keys.cameras))
        return [camera_status_from_json(kept[camera]) for camera in sorted(kept)]

    # --- notifications ----------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Listeners get every change committed after subscribe returns (by any store on this
        Redis and prefix), in commit order, on a background thread that reads `P:changes`."""
        with self._listen_lock:
            subscription = _Subscription(listener, _stream_id(self._last_change_id()))
            self._subscriptions.append(subscription)
            if self._reader is None:
                self._reader = _ChangeReader(self, subscription.after)
                self._reader.start()

        def unsubscribe() -> None:
            with self._listen_lock:
                if subscription not in self._subscriptions:
                    return
                self._subscriptions.remove(subscription)
                if not self._subscriptions and self._reader is not None:
                    # Not joined: the reader delivers nothing more, and its thread ends by itself
                    # within one read block. close() waits for it.
                    self._stopping = [r for r in self._stopping if r.alive] + [self._reader]
                    self._reader.stop()
                    self._reader = None

        return unsubscribe

    def close(self) -> None:
        """Lets the listeners hear every change committed before the call (up to
        CLOSE_DRAIN_S: a role stopping right after its last batch must not lose its last
        notifications), then stops the listener thread; closes the client if this store made it."""
        with self._listen_lock:
            current = self._reader
        if current is not None:
            try:
                current.wait_for(_stream_id(self._last_change_id()), CLOSE_DRAIN_S)
            except RedisError as exc:  # Redis gone: nothing more to deliver anyway
                log.warning("alert store: could not read the last change id while closing: %s", exc)
        with self._listen_lock:
            readers = [*self._stopping, *([self._reader] if self._reader else [])]
            self._reader, self._stopping = None, []
            self._subscriptions.clear()
            for reader in readers:
                reader.stop()
        for reader in readers:
            reader.join()
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals --------------------------------------------------------------------------

    def _apply_batch(
        self, events: Sequence[CrowdEvent], decide: RouteFn, now: float, attempts: int
    ) -> tuple[list[AlertChange | None], Exception | None]:
        """Plan and write `events` in one transaction, retried up to `attempts` times on
        conflict. Returns the plan's results and its failure (routing failed there: the events
        before it are written, the rest not); raises StoreConflictError after the last try."""
        transaction = _EventsTransaction(self, events, decide, now, attempts)
        transaction.start()
        return transaction.finish()

    def _transact(self, watch: list[str], step: Callable[[Pipeline], tuple[_T, _Writer | None]]) -> _T:
        """Optimistic transaction: WATCH `watch`, run `step` (reads, then decides), then EXEC
        the writes it returns; start again when a watched key changed before EXEC."""
        with self._client.pipeline(transaction=True) as pipe:
            for _ in range(MAX_ATTEMPTS):
                try:
                    pipe.watch(*watch)  # type: ignore[no-untyped-call]  # untyped in redis-py
                    result, write = step(pipe)
                    if write is None:
                        pipe.unwatch()
                        return result
                    pipe.multi()
                    write(pipe)
                    pipe.execute()
                    return result
                except WatchError:
                    continue
        raise StoreConflictError(f"gave up after {MAX_ATTEMPTS} conflicting writes to {watch}")

    def _write_change(self, tx: Pipeline, before: Alert | None, change: AlertChange) -> None:
        """Queue what one change writes (`redis_writes.change_commands`). `before` is the stored
        alert (read under WATCH), so unchanged index entries are left alone."""
        for command in change_commands(self._keys, before, change, self._maxlen):
            tx.execute_command(*command)  # type: ignore[no-untyped-call]  # untyped in redis-py

    def _read_alerts(self, ids: list[str]) -> list[Alert]:
        if not ids:
            return []
        with self._client.pipeline(transaction=True) as pipe:
            for alert_id in ids:
                pipe.hgetall(self._keys.alert(alert_id))
            rows = pipe.execute()
        alerts = (_alert_or_none(_text_map(row)) for row in rows)
        return [a for a in alerts if a is not None]

    def _last_change_id(self) -> str:
        last = _entries(self._client.xrevrange(self._keys.changes, count=1))
        return last[0][0] if last else "0-0"

    def _deliver(self, reader: _ChangeReader, entry_id: tuple[int, int], update: StoreUpdate) -> None:
        with self._listen_lock:
            if reader.stopped:
                return
            for sub in list(self._subscriptions):
                if entry_id <= sub.after:
                    continue  # committed before this listener subscribed
                try:
                    sub.listener(update)
                except Exception:
                    log.exception("alert store listener %r failed; change kept", sub.listener)


_Writer = Callable[[Pipeline], None]


class _EventsTransaction:
    """A batch of events as one optimistic transaction, over a pool connection held from
    `start` to `finish`. `start`: WATCH the batch's alerts, read them and the events' dedupe
    marks in one round trip, plan (`store.batch`), send MULTI, the writes and EXEC. `finish`:
    read EXEC's reply; when a watched alert changed meanwhile, read, plan and send again, up to
    `attempts` tries in all."""

    def __init__(
        self, store: RedisAlertStore, events: Sequence[CrowdEvent], decide: RouteFn, now: float, attempts: int
    ) -> None:
        k = store.keys
        self._store, self._events, self._decide, self._now = store, events, decide, now
        self._attempts = attempts
        self._alert_ids = list(dict.fromkeys(e.episode_key for e in events))
        self._alert_keys = [k.alert(a) for a in self._alert_ids]
        self._marks: wire.Command = ("ZMSCORE", k.applied, *(e.id for e in events))
        self._conn: Connection | None = None
        self._plan = BatchPlan()
        self._in_flight = 0  # the writes of the transaction sent and not yet answered

    def start(self) -> None:
        self._conn = wire.checkout(self._store._client)
        try:
            self._send(self._conn)
        except BaseException:
            self._release(broken=True)
            raise

    def finish(self) -> tuple[list[AlertChange | None], Exception | None]:
        conn = self._conn
        if conn is None:
            raise RuntimeError("finish() without start()")
        try:
            tries = 1
            while self._in_flight and not wire.read_transaction(conn, self._in_flight):
                if tries == self._attempts:
                    raise StoreConflictError(
                        f"gave up after {tries} conflicting writes to a batch of {len(self._events)} events"
                    )
                tries += 1
                self._send(conn)
        except BaseException:
            self._release(broken=True)  # replies may be left unread, or a WATCH in place
            for alert_id in self._alert_ids:  # perhaps written, perhaps not
                self._store._cache.forget(alert_id)
            raise
        self._release(broken=False)
        last = {w.change.alert.id: w.change.alert for w in self._plan.writes}  # each one's last state
        for alert in last.values():
            self._store._cache.put(alert)
        return self._plan.results, self._plan.failure

    def _send(self, conn: Connection) -> None:
        # Only the alerts are watched: an event that changes an alert is caught by its alert's
        # key, and one that changes nothing writes only its own dedupe mark (ZADD NX, the same
        # whoever wins). Watching the marks' set as well would make any two workers' batches
        # conflict, since every batch adds to it.
        store, events = self._store, self._events
        # A cached alert is read by its version fields, any other by its whole record.
        cached = [store._cache.get(a) for a in self._alert_ids]
        reads: list[wire.Command] = [
            ("HMGET", key, *VERSION_FIELDS, "format") if hit else ("HGETALL", key)
            for key, hit in zip(self._alert_keys, cached, strict=True)
        ]
        marks, *rows = wire.watch_and_read(conn, self._alert_keys, [self._marks, *reads], keep_errors=True)
        if isinstance(marks, ResponseError):
            raise marks  # the marks' set itself is unusable: nothing can be decided
        # A mark older than the TTL counts as gone, removed or not (the writes remove it).
        horizon = self._now - store._dedupe_ttl_s
        applied = {
            e.id for e, mark in zip(events, marks, strict=True) if mark is not None and float(mark) > horizon
        }
        unreadable: dict[str, _Unreadable] = {}
        stored = self._stored(conn, cached, rows, unreadable)
        self._plan = plan = plan_batch(events, applied, stored, self._decide, self._now)
        if not plan.applied:
            wire.unwatch(conn)
            self._in_flight = 0
            return
        writes = batch_commands(store.keys, plan, self._now, store._dedupe_ttl_s, store._maxlen)
        # Moved aside only where an event of the batch starts the alert again (a redelivery
        # alone, or an event after a failure, leaves the record where it is).
        restarted = {w.change.alert.id for w in plan.writes if w.change.alert.id in unreadable}
        if restarted:
            writes = [*self._quarantine({a: unreadable[a] for a in restarted}), *writes]
        wire.send_transaction(conn, writes)
        self._in_flight = len(writes)

    def _stored(
        self,
        conn: Connection,
        cached: list[tuple[Version, Alert] | None],
        rows: list[Any],
        unreadable: dict[str, _Unreadable],
    ) -> dict[str, Alert | None]:
        """The batch's alerts as stored, from the replies to the reads: a cached alert whose
        version still matches is taken from the cache, one that changed is read whole (still
        under WATCH), and what is read whole is cached. A record that cannot be read is added
        to `unreadable` and counts as none."""
        cache = self._store._cache
        stored: dict[str, Alert | None] = {}
        changed: list[str] = []
        for alert_id, hit, row in zip(self._alert_ids, cached, rows, strict=True):
            if hit is None or isinstance(row, ResponseError):
                stored[alert_id] = self._record(alert_id, row, unreadable)
                continue
            *values, record_format = row  # the format: a record's only field no change moves
            version = tuple(None if v is None else _text(v) for v in values)
            if version == hit[0]:
                stored[alert_id] = hit[1]
            elif record_format is None and all(v is None for v in version):
                stored[alert_id] = None  # removed meanwhile (retention)
                cache.forget(alert_id)
            else:  # changed, or damaged: read whole
                changed.append(alert_id)
        if changed:
            k = self._store.keys
            rows = wire.query(conn, [("HGETALL", k.alert(a)) for a in changed], keep_errors=True)
            for alert_id, row in zip(changed, rows, strict=True):
                stored[alert_id] = self._record(alert_id, row, unreadable)
        return stored

    def _record(self, alert_id: str, row: Any, unreadable: dict[str, _Unreadable]) -> Alert | None:
        """The alert in an HGETALL reply (cached), or None: absent, or unreadable (a record
        written by something else, damaged, not text, or a key of another type), which goes to
        `unreadable`."""
        cache = self._store._cache
        try:
            if isinstance(row, ResponseError):
                raise RecordError(str(row))
            alert = _alert_or_none(_hash_reply(row))
            if alert is not None and alert.id != alert_id:
                raise RecordError(f"it names alert {alert.id!r}")
        except (RecordError, ValueError) as exc:
            # Failing the batch would fail it again on every redelivery: the consumer would
            # stop for good. The record is moved aside in the batch's transaction instead.
            unreadable[alert_id] = _Unreadable(str(exc), _center_of(row))
            alert = None
        if alert is None:
            cache.forget(alert_id)
        else:
            cache.put(alert)
        return alert

    def _quarantine(self, unreadable: dict[str, _Unreadable]) -> list[wire.Command]:
        """Move unreadable records aside with their audit trails (the records are watched:
        nobody wrote them since), and take their ids out of the indexes, which the new alert
        then enters as any new alert does."""
        k = self._store.keys
        out: list[wire.Command] = []
        for alert_id, (problem, center) in sorted(unreadable.items()):
            aside = k.quarantine(alert_id, f"{round(self._now * 1000)}-{uuid.uuid4().hex[:8]}")
            log.error(
                "alert store: the record of alert %s cannot be read (%s); it is moved to %s (its "
                "audit to %s:audit) and the alert starts again from this batch's events",
                alert_id,
                problem,
                aside,
                aside,
            )
            # COPY, then DEL: unlike RENAME, no error when there is no audit yet.
            out.append(("RENAME", k.alert(alert_id), aside))
            out.append(("COPY", k.alert_audit(alert_id), f"{aside}:audit"))
            out.append(("DEL", k.alert_audit(alert_id)))
            indexes = [k.alerts, k.open, k.resolved, k.escalations]
            if center is not None:
                indexes += [k.center_all(center), k.center_open(center)]
            out.extend(("ZREM", index, alert_id) for index in indexes)
        return out

    def _release(self, *, broken: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            wire.checkin(self._store._client, conn, broken=broken)


class _Unreadable(NamedTuple):
    """Why an alert record cannot be read, and the center it names if that much can be read
    (to take the id out of that center's indexes)."""

    problem: str
    center: str | None


def _center_of(row: Any) -> str | None:
    try:
        center = _hash_reply(row).get("center_id")
    except Exception:  # not a hash reply at all
        return None
    return center or None


class _PendingBatch:
    """What `submit_events` returns: the batch's transaction, started at once."""

    def __init__(
        self, store: RedisAlertStore, events: Sequence[CrowdEvent], decide: RouteFn, now: float
    ) -> None:
        self._store, self._events, self._decide, self._now = store, events, decide, now
        self._transaction: _EventsTransaction | None = None
        self._error: Exception | None = None
        if not events:
            return
        transaction = _EventsTransaction(store, events, decide, now, BATCH_ATTEMPTS)
        try:
            transaction.start()
        except Exception as exc:  # kept for result(), which reports every outcome
            self._error = exc
        else:
            self._transaction = transaction

    def result(self) -> list[AlertChange | None]:
        if self._error is not None:
            # Redis failed before EXEC was sent: nothing is stored.
            raise BatchApplyError([], self._error) from self._error
        if self._transaction is None:
            return []
        try:
            results, failure = self._transaction.finish()
        except StoreConflictError:
            log.info(
                "alert store: a batch of %d events kept conflicting; applying them one by one",
                len(self._events),
            )
            return apply_each(self._store.apply_event, self._events, self._decide, self._now)
        except Exception as exc:
            # Redis failed during EXEC: nothing is stored (or, with the reply lost, all of it
            # is, and the redelivered events are deduplicated).
            raise BatchApplyError([], exc) from exc
        if failure is not None:
            raise BatchApplyError(results, failure) from failure
        return results


@dataclass(eq=False, slots=True)
class _Subscription:
    listener: Listener
    after: tuple[int, int]  # stream id of the last change before it subscribed


# How long closing a store waits for its listeners to hear the changes committed before.
CLOSE_DRAIN_S: Final = 5.0


class _ChangeReader:
    """The background thread behind subscribe: XREAD BLOCK on `P:changes` over a connection of
    its own (named `crowdwatch-listener:<prefix>:<n>`, see CLIENT LIST), each update handed to
    the store's listeners. Survives a dropped connection or a Redis restart: it keeps its
    position and reconnects with a backoff."""

    def __init__(self, store: RedisAlertStore, after: tuple[int, int]) -> None:
        self._store = store
        self._position = f"{after[0]}-{after[1]}"
        self._stop = threading.Event()
        self._read_up_to = after  # the last entry handed on (or skipped), for wait_for
        self._progress = threading.Condition()
        self.name = f"crowdwatch-listener:{store.keys.prefix}:{uuid.uuid4().hex[:8]}"
        shared = store._client.connection_pool
        # A pool of its own: the name is set again on every reconnect, and a blocking read
        # needs a socket timeout longer than its block.
        options = shared.connection_kwargs | {"client_name": self.name, "socket_timeout": READ_TIMEOUT_S}
        self._conn = redis.Redis(
            connection_pool=redis.ConnectionPool(connection_class=shared.connection_class, **options)
        )
        self._thread = threading.Thread(target=self._run, name="crowdwatch-redis-store-listener", daemon=True)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        # Wake the blocked XREAD now rather than at the end of its block.
        with contextlib.suppress(RedisError):
            for client in self._store._client.client_list():
                if client.get("name") == self.name:
                    self._store._client.client_unblock(int(client["id"]))

    def wait_for(self, entry_id: tuple[int, int], timeout: float) -> bool:
        """Wait until the entry `entry_id` of the change stream was handed on; False on timeout
        or when the thread has ended."""
        if threading.current_thread() is self._thread:
            return False  # from inside a listener: it cannot wait for itself
        with self._progress:
            return (
                self._progress.wait_for(
                    lambda: self._read_up_to >= entry_id or not self._thread.is_alive(), timeout
                )
                and self._read_up_to >= entry_id
            )

    def join(self) -> None:
        if threading.current_thread() is not self._thread:  # unsubscribed from inside a listener
            self._thread.join(timeout=READ_TIMEOUT_S)

    def _run(self) -> None:
        stream = self._store.keys.changes
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    reply = self._conn.xread({stream: self._position}, count=READ_BATCH, block=READ_BLOCK_MS)
                    failures = 0
                except RedisError as exc:
                    if self._stop.is_set():
                        break
                    delay = _RECONNECT_BACKOFF_S[min(failures, len(_RECONNECT_BACKOFF_S) - 1)]
                    failures += 1
                    log.warning(
                        "alert store listener: reading changes failed (%s); retrying in %.1f s", exc, delay
                    )
                    self._stop.wait(delay)
                    continue
                for entry_id, fields in _stream_reply(reply, stream):
                    self._position = entry_id
                    try:
                        update = update_from_fields(fields)
                    except RecordError:
                        log.exception("alert store listener: skipping unreadable change %s", entry_id)
                    else:
                        self._store._deliver(self, _stream_id(entry_id), update)
                    with self._progress:
                        self._read_up_to = _stream_id(entry_id)
                        self._progress.notify_all()
        except Exception:
            log.exception("alert store listener stopped by an unexpected error")
        finally:
            self._conn.close()
            self._conn.connection_pool.disconnect()
            with self._progress:
                self._progress.notify_all()  # wait_for returns: nothing more will be read


# --- helpers ----------------------------------------------------------------------------------


def _routed_once(decide: RouteFn) -> RouteFn:
    """`decide`, remembered per episode: a retried transaction does not route again."""
    decisions: dict[str, RouteDecision] = {}

    def route(event: CrowdEvent) -> RouteDecision:
        decision = decisions.get(event.episode_key)
        if decision is None:
            decision = decisions[event.episode_key] = decide(event)
        return decision

    return route


def _require(alert: Alert | None, alert_id: str) -> Alert:
    if alert is None:
        raise AlertNotFoundError(alert_id)
    return alert


def _read_alert(pipe: Pipeline, key: str) -> Alert | None:
    return _alert_or_none(_text_map(pipe.hgetall(key)))


def _hash_reply(reply: Any) -> dict[str, str]:
    """An HGETALL reply read off the connection: a flat [field, value, ...] list (RESP2) or a
    map (RESP3)."""
    if isinstance(reply, dict):
        return _text_map(reply)
    return _text_map(dict(zip(reply[0::2], reply[1::2], strict=True)))


def _alert_or_none(fields: dict[str, str]) -> Alert | None:
    return alert_from_fields(fields) if fields else None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _texts(values: Iterable[Any]) -> list[str]:
    return [_text(v) for v in values]


def _text_map(mapping: Mapping[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in mapping.items()}


def _entries(reply: Iterable[tuple[Any, Any]] | None) -> list[tuple[str, dict[str, str]]]:
    """XRANGE-style reply -> (entry id, fields) in order."""
    return [(_text(entry_id), _text_map(fields or {})) for entry_id, fields in reply or ()]


def _stream_reply(reply: Any, stream: str) -> list[tuple[str, dict[str, str]]]:
    """The entries of `stream` in an XREAD reply (RESP2: a list of [name, entries]; RESP3: a dict)."""
    if not reply:
        return []
    pairs = reply.items() if isinstance(reply, dict) else reply
    out: list[tuple[str, dict[str, str]]] = []
    for name, entries in pairs:
        if _text(name) == stream:
            # RESP3 may nest the entries one level deeper.
            out.extend(_entries(entries[0] if entries and isinstance(entries[0], list) else entries))
    return out


def _stream_id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)

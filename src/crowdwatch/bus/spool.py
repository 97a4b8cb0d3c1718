"""A durable spool in front of any EventBus: while the broker is unreachable, messages wait in
a local SQLite file and are replayed in order when it is back (DESIGN 6).

How it works:
- Normally a message goes straight to the inner bus and is kept in memory until an inner
  `flush` confirms it. A background thread confirms every `confirm_interval` s; `flush`
  confirms at once.
- When the inner bus refuses a message (publish raises) or a confirmation fails (flush raises
  or times out), every unconfirmed message and the new one go to the spool, in publish order.
- While the spool holds anything, new messages go to the spool too, behind the older ones:
  one camera's events never overtake each other.
- The background thread replays the spool oldest first, in batches: publish the batch, flush,
  and only then delete it from the file. After a failure it retries with exponential backoff
  (with jitter), probing with a single message until one gets through.
- A message is deleted from the spool only after the broker acknowledged it, so a crash or a
  failed replay leads to duplicates (consumers dedupe by event id), never to losses. The spool
  survives restarts: opening a non-empty file resumes the replay.
- Nothing is dropped silently: if the spool itself cannot write (disk full), `publish` raises.

`flush` returns when every message published before it is either acknowledged by the broker
or safely in the spool; it does not wait for the spool to drain (`drain` does). One process per
spool file (an exclusive lock on `<path>.lock` enforces it). The inner bus must allow publish
and flush from different threads (MemoryBus and KafkaBus do).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import random
import sqlite3
import threading
import time
from base64 import b64decode, b64encode
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from prometheus_client import CollectorRegistry, Counter, Gauge

from crowdwatch.bus.base import Consumer, EventBus, Headers

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    headers TEXT NOT NULL,
    spooled_at REAL NOT NULL
)
"""


class SpoolError(RuntimeError):
    """The spool could not keep a message (its file is locked by another process, disk full...)."""


@dataclass(frozen=True, slots=True)
class SpoolMetrics:
    spooled: Counter  # messages written to the spool
    replayed: Counter  # messages replayed from the spool and acknowledged
    failures: Counter  # label stage: publish | confirm | replay
    depth: Gauge  # messages in the spool now

    @classmethod
    def create(cls, registry: CollectorRegistry, namespace: str = "crowdwatch") -> SpoolMetrics:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, namespace=namespace, subsystem="bus", registry=registry)

        return cls(
            spooled=counter(
                "spooled_messages", "Messages kept in the local spool while the broker was unreachable."
            ),
            replayed=counter(
                "replayed_messages", "Spooled messages replayed and acknowledged by the broker."
            ),
            failures=counter(
                "broker_failures", "Failed publishes, confirmations and replay attempts.", ("stage",)
            ),
            depth=Gauge(
                "spool_depth",
                "Messages waiting in the local spool.",
                namespace=namespace,
                subsystem="bus",
                registry=registry,
            ),
        )


@dataclass(frozen=True, slots=True)
class _Record:
    topic: str
    key: str
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


class SpoolingBus:
    """Wraps `inner` (which it owns and closes). `registry`: where the metrics go (a private
    registry when None — never the global one). `background=False` starts no thread: then
    `replay()` / `drain()` do the replaying (tests, tools)."""

    def __init__(
        self,
        inner: EventBus,
        path: str | os.PathLike[str],
        *,
        registry: CollectorRegistry | None = None,
        background: bool = True,
        confirm_interval: float = 1.0,
        flush_timeout: float = 5.0,
        batch_size: int = 500,
        max_unconfirmed: int = 10_000,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
    ) -> None:
        self._inner = inner
        self._path = Path(path)
        self._confirm_interval = confirm_interval
        self._flush_timeout = flush_timeout
        self._batch_size = batch_size
        self._max_unconfirmed = max_unconfirmed
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self.metrics = SpoolMetrics.create(registry if registry is not None else CollectorRegistry())

        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = _lock(self._path)
        try:
            self._db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a spooled message survives power loss
            self._db.execute(_SCHEMA)
            self._depth: int = self._db.execute("SELECT COUNT(*) FROM spool").fetchone()[0]
        except BaseException:
            self._lock_file.close()
            raise
        self.metrics.depth.set(self._depth)
        if self._depth:
            log.warning("spool %s holds %d messages from before; replaying them first", path, self._depth)

        # _cond guards the spool file, the unconfirmed queue and the counters below. _io
        # serialises confirmations and replay passes (each ends with an inner flush).
        self._cond = threading.Condition()
        self._io = threading.Lock()
        self._unconfirmed: deque[tuple[int, _Record]] = deque()
        self._seq = 0
        self._probing = False  # after a failed replay, send one message at a time
        self._closed = False
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name=f"spool-{self._path.name}", daemon=True)
            self._thread.start()

    # --- EventBus -------------------------------------------------------------------------

    def publish(self, topic: str, key: str, value: bytes, headers: Headers | None = None) -> None:
        record = _Record(topic, key, bytes(value), tuple((headers or {}).items()))
        with self._cond:
            self._check_open()
            if self._depth:
                self._spool([record])  # keep behind the older ones
                return
            try:
                self._inner.publish(topic, key, record.value, dict(record.headers))
            except Exception as exc:
                self.metrics.failures.labels(stage="publish").inc()
                log.warning("publish to %s failed (%r); spooling", topic, exc)
                self._spool_unconfirmed(extra=[record])
                return
            self._seq += 1
            self._unconfirmed.append((self._seq, record))
            confirm_now = len(self._unconfirmed) >= self._max_unconfirmed
        if confirm_now:
            self._confirm(self._flush_timeout)

    def flush(self, timeout: float = 10.0) -> None:
        """Returns when every message published so far is acknowledged by the broker or in the
        spool (durable either way). Raises only if the spool cannot write."""
        self._confirm(timeout)

    def consumer(self, topics: Sequence[str], group: str) -> Consumer:
        return self._inner.consumer(topics, group)

    def close(self, timeout: float = 10.0) -> None:
        """Stop replaying, confirm or spool what is unconfirmed, close the inner bus and the
        file. What is still spooled stays in the file for the next start. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        try:
            self._confirm(timeout)  # raises when the spool cannot write: the rest still closes
        finally:
            try:
                self._inner.close()
            except Exception as exc:
                log.warning("closing the inner bus failed: %r", exc)
            with self._cond:
                if self._depth:
                    log.warning("closing with %d messages still in spool %s", self._depth, self._path)
                self._db.close()
                self._lock_file.close()

    def __enter__(self) -> SpoolingBus:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- spool control --------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Messages in the spool now."""
        with self._cond:
            return self._depth

    def replay(self, timeout: float | None = None) -> int:
        """Replay the spool in this thread until it is empty, a replay attempt fails or
        `timeout` passed. Returns how many messages were acknowledged."""
        deadline = None if timeout is None else time.monotonic() + timeout
        total = 0
        while self.depth and (deadline is None or time.monotonic() < deadline):
            done = self._replay_batch()
            if done is None:
                break
            total += done
        return total

    def drain(self, timeout: float) -> bool:
        """Wait until the spool is empty and every message is confirmed (True), or `timeout`
        passed (False). Replays here too when there is no background thread."""
        deadline = time.monotonic() + timeout
        while True:
            if self._thread is None:
                self.replay(max(0.0, deadline - time.monotonic()))
            confirmed = self._confirm(max(0.1, min(self._flush_timeout, deadline - time.monotonic())))
            with self._cond:
                if confirmed and not self._depth and not self._unconfirmed:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                # The replay thread notifies on progress; without it this paces the retries.
                self._cond.wait(min(remaining, self._confirm_interval))

    # --- internals ------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = self._retry_initial
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or self._depth > 0, self._confirm_interval)
                if self._closed:
                    return
                depth = self._depth
            try:
                if not depth:
                    self._confirm(self._flush_timeout)
                    continue
                done = self._replay_batch()
            except Exception as exc:  # the spool file itself failed: keep going, loudly
                log.error("spool %s: %r", self._path, exc)
                done = None
            if done is not None:
                backoff = self._retry_initial
                continue
            pause = backoff * random.uniform(0.8, 1.2)
            backoff = min(backoff * 2, self._retry_max)
            with self._cond:
                self._cond.wait_for(lambda: self._closed, pause)

    def _confirm(self, timeout: float) -> bool:
        """Flush the inner bus for the unconfirmed messages; on failure spool them all.
        True when everything published before the call is acknowledged."""
        with self._io:
            with self._cond:
                if not self._unconfirmed:
                    return True
                last = self._unconfirmed[-1][0]
            try:
                self._inner.flush(timeout)
            except Exception as exc:
                self.metrics.failures.labels(stage="confirm").inc()
                log.warning("broker did not confirm messages (%r); spooling them", exc)
                with self._cond:
                    self._spool_unconfirmed()
                return False
            with self._cond:
                # A publish that failed meanwhile may have spooled these already: drop by seq.
                while self._unconfirmed and self._unconfirmed[0][0] <= last:
                    self._unconfirmed.popleft()
            return True

    def _replay_batch(self) -> int | None:
        """Publish the oldest spooled messages, flush, then delete them. Returns how many, or
        None when the inner bus failed (nothing deleted)."""
        with self._io:
            with self._cond:
                limit = 1 if self._probing else self._batch_size
                rows = self._db.execute(
                    "SELECT id, topic, key, value, headers FROM spool ORDER BY id LIMIT ?", (limit,)
                ).fetchall()
            if not rows:
                return 0
            try:
                for _, topic, key, value, headers in rows:
                    self._inner.publish(topic, key, bytes(value), dict(_decode_headers(headers)))
                self._inner.flush(self._flush_timeout)
            except Exception as exc:
                self.metrics.failures.labels(stage="replay").inc()
                if not self._probing:
                    log.warning("replaying spool %s failed (%r); retrying with backoff", self._path, exc)
                self._probing = True
                return None
            if self._probing:
                log.info("broker is back; replaying %d spooled messages", self.depth)
            self._probing = False
            with self._cond:
                self._db.execute("DELETE FROM spool WHERE id <= ?", (rows[-1][0],))
                self._depth -= len(rows)
                self.metrics.replayed.inc(len(rows))
                self.metrics.depth.set(self._depth)
                self._cond.notify_all()
            return len(rows)

    def _spool_unconfirmed(self, extra: Sequence[_Record] = ()) -> None:
        """Under _cond: every unconfirmed message (oldest first), then `extra`, to the spool.
        If the spool cannot write, the unconfirmed ones stay queued and SpoolError is raised."""
        self._spool([r for _, r in self._unconfirmed] + list(extra))
        self._unconfirmed.clear()

    def _spool(self, records: Sequence[_Record]) -> None:
        """Under _cond: append to the file in one transaction."""
        if not records:
            return
        now = time.time()
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO spool (topic, key, value, headers, spooled_at) VALUES (?, ?, ?, ?, ?)",
                [(r.topic, r.key, r.value, _encode_headers(r.headers), now) for r in records],
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            # Not silent: the caller of publish/flush gets this.
            raise SpoolError(f"cannot write {len(records)} message(s) to spool {self._path}: {exc}") from exc
        self._depth += len(records)
        self.metrics.spooled.inc(len(records))
        self.metrics.depth.set(self._depth)
        self._cond.notify_all()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("bus is closed")


def _encode_headers(headers: tuple[tuple[str, bytes], ...]) -> str:
    return json.dumps([[k, b64encode(v).decode("ascii")] for k, v in headers])


def _decode_headers(text: str) -> list[tuple[str, bytes]]:
    return [(k, b64decode(v)) for k, v in json.loads(text)]


def _lock(path: Path) -> IO[bytes]:
    """An exclusive lock on `<path>.lock`, held while the bus is open."""
    handle = open(path.with_name(path.name + ".lock"), "wb")  # noqa: SIM115 - held until close
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.close()
        raise SpoolError(f"spool {path} is in use by another process") from exc
    return handle

"""EventBus on Apache Kafka with kafka-python 2.3 (distributed mode, DESIGN 1, 6).

Producer: acks=all, retries, idempotence, lz4 (the `lz4` package; a tenth of gzip's cost per
record batch, which matters when each camera's few events a second are batches of one), a short
linger; the key is the camera id, so one camera's events stay in order on
one partition. `publish` queues; a delivery that fails later is reported by the next `flush`
(`DeliveryError`) — wrap the bus in `SpoolingBus` to keep such messages instead of losing them.

Topics are created on first use (or up front by `ensure_topics`) with the partition counts of
`DEFAULT_TOPICS`, not with the broker's auto-create defaults.

Consumer: a member of a Kafka consumer group, auto-commit off, new groups start at the earliest
offset; `commit` stores, per partition, the offset after the highest message given, without
waiting for the broker (`bus.kafka_commits`: finished synchronously on close, on rewind and when
the group takes partitions away).

Constructing the bus does no I/O: clients connect on first use, so a broker that is down shows
up as an exception from `publish`/`consumer`, not from here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaTimeoutError, TopicAlreadyExistsError
from kafka.producer.future import FutureRecordMetadata
from prometheus_client import CollectorRegistry, Counter

from crowdwatch.bus.base import CAMERA_STATUS, CROWD_EVENTS, CROWD_EVENTS_DLQ, Headers, Message
from crowdwatch.bus.kafka_commits import FINISH_TIMEOUT_MS, AsyncCommits, FailureHook

if TYPE_CHECKING:
    from crowdwatch.config.backends import KafkaBusConfig

log = logging.getLogger(__name__)

CAMERAS: Final = "cameras"  # compacted: camera id -> its assignment record (DESIGN 6, scale-out)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """How a topic is created. `compacted` keeps the newest message per key instead of deleting
    by age. `config` adds other topic settings (e.g. `{"retention.ms": "604800000"}`)."""

    name: str
    partitions: int
    compacted: bool = False
    config: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError(f"topic {self.name!r}: partitions must be at least 1")


# Partitions bound how many consumers of one group share a topic: 6 alerting workers for events,
# 6 workers sharing cameras; the DLQ is read by people, and one partition keeps it in order.
DEFAULT_TOPICS: Final[Mapping[str, TopicSpec]] = {
    t.name: t
    for t in (
        TopicSpec(CROWD_EVENTS, 6),
        TopicSpec(CAMERA_STATUS, 3),
        TopicSpec(CROWD_EVENTS_DLQ, 1),
        TopicSpec(CAMERAS, 6, compacted=True),
    )
}

COMPRESSION_TYPES: Final = ("lz4", "gzip", "none")
_PRUNE_EVERY: Final = 1000
_LOG_EVERY_S: Final = 10.0


class _FailureLog:
    """Logs undelivered messages at most every 10 s (an outage fails them by the thousand)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._unlogged = 0
        self._last = float("-inf")

    def __call__(self, topic: str, key: str, exc: BaseException) -> None:
        with self._lock:
            self._unlogged += 1
            now = time.monotonic()
            if now - self._last < _LOG_EVERY_S:
                return
            count, self._unlogged, self._last = self._unlogged, 0, now
        log.error("%d message(s) not delivered, e.g. to %s (key %r): %r", count, topic, key, exc)


class DeliveryError(RuntimeError):
    """Some messages published since the previous flush were not acknowledged by the broker."""

    def __init__(self, failures: Sequence[tuple[str, str, BaseException]]) -> None:
        self.failures = list(failures)
        topic, key, first = failures[0]
        super().__init__(f"{len(failures)} message(s) not delivered; first: {topic} key {key!r}: {first!r}")


def connection_options(config: KafkaBusConfig) -> dict[str, Any]:
    """kafka-python keyword arguments for connecting (servers, client id, TLS, SASL), shared by
    the producer, the consumers and the admin client."""
    options: dict[str, Any] = {
        "bootstrap_servers": list(config.bootstrap_servers),
        "client_id": config.client_id,
        "security_protocol": config.security_protocol,
    }
    if config.sasl_mechanism is not None:
        options["sasl_mechanism"] = config.sasl_mechanism
        options["sasl_plain_username"] = config.sasl_username
        if config.sasl_password is not None:
            options["sasl_plain_password"] = config.sasl_password.get_secret_value()
    tls = {
        "ssl_cafile": config.ssl_cafile,
        "ssl_certfile": config.ssl_certfile,
        "ssl_keyfile": config.ssl_keyfile,
        "ssl_password": None if config.ssl_password is None else config.ssl_password.get_secret_value(),
    }
    options.update({k: v for k, v in tls.items() if v is not None})
    if config.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_check_hostname"] = config.ssl_check_hostname
    return options


class KafkaBus:
    """`connection` holds kafka-python connection keywords (see `connection_options`);
    `replication_factor` None means min(3, brokers in the cluster)."""

    def __init__(
        self,
        connection: Mapping[str, Any],
        *,
        topics: Mapping[str, TopicSpec] = DEFAULT_TOPICS,
        default_partitions: int = 1,
        replication_factor: int | None = None,
        compression: str = "lz4",
        linger_ms: int = 5,
        request_timeout_ms: int = 10_000,
        delivery_timeout_ms: int = 30_000,
        max_block_ms: int = 5_000,
        session_timeout_ms: int = 10_000,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """`registry`: where the bus's metrics go (a private registry when None, never the
        global one)."""
        if "bootstrap_servers" not in connection:
            raise ValueError("connection needs bootstrap_servers")
        if compression not in COMPRESSION_TYPES:
            raise ValueError(f"compression must be one of {COMPRESSION_TYPES}, not {compression!r}")
        if default_partitions < 1:
            raise ValueError("default_partitions must be at least 1")
        # kafka-python backs off reconnecting up to 30 s by default; a broker back from an
        # outage should be used within a couple of seconds.
        self._connection = {"reconnect_backoff_max_ms": 2000, **connection}
        self._topics = dict(topics)
        self._default_partitions = default_partitions
        self._replication_factor = replication_factor
        self._producer_options: dict[str, Any] = {
            "acks": "all",
            "enable_idempotence": True,
            "retries": 2**31 - 1,  # bounded in time by delivery_timeout_ms
            "max_in_flight_requests_per_connection": 1,  # kafka-python 2.3 needs 1 for idempotence
            "compression_type": None if compression == "none" else compression,
            "linger_ms": linger_ms,
            "request_timeout_ms": request_timeout_ms,
            "delivery_timeout_ms": max(delivery_timeout_ms, linger_ms + request_timeout_ms),
            "max_block_ms": max_block_ms,
        }
        self._consumer_options: dict[str, Any] = {
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "session_timeout_ms": session_timeout_ms,
            "heartbeat_interval_ms": max(100, session_timeout_ms // 3),
            "request_timeout_ms": max(request_timeout_ms, session_timeout_ms + 5_000),
        }
        self._admin_timeout_ms = request_timeout_ms
        self._lock = threading.Lock()
        self._producer: KafkaProducer | None = None
        self._admin: KafkaAdminClient | None = None
        self._created: set[str] = set()
        # Sends since the last flush, checked by the next flush; succeeded ones are pruned now
        # and then so that a bus that is never flushed does not grow.
        self._sent: list[tuple[str, str, FutureRecordMetadata]] = []
        self._prune_at = _PRUNE_EVERY
        self._log_failure = _FailureLog()
        self._closed = False
        self.commit_failures = Counter(
            "commit_failures",
            "Offset commits the broker refused or that timed out, by stage (async: a commit "
            "in the poll loop; sync: before closing, rewinding or giving partitions up). Their "
            "messages are delivered again.",
            ("stage",),
            namespace="crowdwatch",
            subsystem="bus",
            registry=registry if registry is not None else CollectorRegistry(),
        )

    @classmethod
    def from_config(cls, config: KafkaBusConfig, registry: CollectorRegistry | None = None) -> KafkaBus:
        return cls(
            connection_options(config),
            default_partitions=config.default_partitions,
            replication_factor=config.replication_factor,
            compression=config.compression,
            linger_ms=config.linger_ms,
            request_timeout_ms=int(config.request_timeout_s * 1000),
            delivery_timeout_ms=int(config.delivery_timeout_s * 1000),
            max_block_ms=int(config.max_block_s * 1000),
            registry=registry,
        )

    # --- topics ---------------------------------------------------------------------------

    @property
    def known_topics(self) -> frozenset[str]:
        """Topics this bus created or found existing (tests drop them afterwards)."""
        with self._lock:
            return frozenset(self._created)

    def spec_for(self, topic: str) -> TopicSpec:
        return self._topics.get(topic) or TopicSpec(topic, self._default_partitions)

    def ensure_topics(self, specs: Iterable[TopicSpec | str] = ()) -> None:
        """Create the topics that do not exist yet (all of `DEFAULT_TOPICS` when none given).
        An existing topic is left as it is, whatever its partitions."""
        wanted = [self.spec_for(s) if isinstance(s, str) else s for s in specs] or list(self._topics.values())
        with self._lock:
            self._check_open()
            self._create([s for s in wanted if s.name not in self._created])

    def _create(self, specs: list[TopicSpec]) -> None:
        """Under the lock. One CreateTopics request per topic, so one existing topic does not
        hide the errors of the others."""
        if not specs:
            return
        admin = self._admin_client()
        replication = self._replication_factor
        if replication is None:
            brokers = len(admin.describe_cluster()["brokers"])
            replication = self._replication_factor = max(1, min(3, brokers))
        for spec in specs:
            config = dict(spec.config)
            if spec.compacted:
                config.setdefault("cleanup.policy", "compact")
            try:
                admin.create_topics(
                    [NewTopic(spec.name, spec.partitions, replication, topic_configs=config)],
                    timeout_ms=self._admin_timeout_ms,
                )
                log.info(
                    "created topic %s (%d partitions, replication %d)",
                    spec.name,
                    spec.partitions,
                    replication,
                )
            except TopicAlreadyExistsError:
                pass
        self._await_leaders(admin, [s.name for s in specs])
        self._created.update(s.name for s in specs)

    def _await_leaders(self, admin: KafkaAdminClient, names: list[str]) -> None:
        """Wait until the brokers serve every partition of `names`. CreateTopics returns once
        the controller has the topic, a moment before the brokers do; a consumer that
        subscribed in that moment would not see the topic until its next metadata refresh
        (minutes later)."""
        deadline = time.monotonic() + self._admin_timeout_ms / 1000
        while True:
            pending = [
                t["topic"]
                for t in admin.describe_topics(names)
                if t["error_code"] != 0
                or not t["partitions"]
                or any(p["leader"] < 0 for p in t["partitions"])
            ]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise KafkaTimeoutError(f"topics without partition leaders after creation: {pending}")
            time.sleep(0.05)  # polling the cluster's metadata; nothing here to wait on instead

    def _admin_client(self) -> KafkaAdminClient:
        if self._admin is None:
            self._admin = KafkaAdminClient(request_timeout_ms=self._admin_timeout_ms, **self._connection)
        return self._admin

    # --- producer -------------------------------------------------------------------------

    def publish(self, topic: str, key: str, value: bytes, headers: Headers | None = None) -> None:
        """Queue one message. Raises at once when the broker cannot take it (no metadata within
        max_block_ms, no connection to create the topic or the producer)."""
        with self._lock:
            self._check_open()
            if topic not in self._created:
                self._create([self.spec_for(topic)])
            if self._producer is None:
                self._producer = KafkaProducer(**self._connection, **self._producer_options)
            producer = self._producer
        # Not under the lock: send may wait for metadata, which the producer's I/O thread fetches.
        future = producer.send(
            topic,
            value=bytes(value),
            key=key.encode("utf-8"),
            headers=[(name, bytes(v)) for name, v in (headers or {}).items()],
        )
        future.add_errback(partial(self._log_failure, topic, key))
        with self._lock:
            self._sent.append((topic, key, future))
            if len(self._sent) >= self._prune_at:
                self._sent = [s for s in self._sent if not (s[2].is_done and s[2].succeeded())]
                self._prune_at = len(self._sent) + _PRUNE_EVERY

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every message published before this call is acknowledged. Raises kafka's
        KafkaTimeoutError when that takes longer than `timeout`, DeliveryError when some were
        refused or timed out; either way the caller must treat all those messages as unsent
        (some may still arrive later: duplicates, never losses)."""
        with self._lock:
            producer = self._producer
            sent, self._sent = self._sent, []
            self._prune_at = _PRUNE_EVERY
        if producer is not None:
            producer.flush(timeout=timeout)
        failures = [
            (topic, key, f.exception if f.is_done and f.exception is not None else TimeoutError("not acked"))
            for topic, key, f in sent
            if not (f.is_done and f.succeeded())
        ]
        if failures:
            raise DeliveryError(failures)

    # --- consumer -------------------------------------------------------------------------

    def consumer(self, topics: Sequence[str], group: str) -> KafkaBusConsumer:
        with self._lock:
            self._check_open()
            self._create([self.spec_for(t) for t in topics if t not in self._created])
        consumer = KafkaConsumer(group_id=group, **self._connection, **self._consumer_options)
        member = KafkaBusConsumer(consumer, lambda stage: self.commit_failures.labels(stage=stage).inc())
        try:
            consumer.subscribe(list(topics), listener=_CommitBeforeRevoke(member.commits))
        except BaseException:
            consumer.close(autocommit=False)  # its sockets and threads, not left for the GC
            raise
        return member

    # --- lifecycle ------------------------------------------------------------------------

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (up to `timeout`) and disconnect. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            producer, admin = self._producer, self._admin
            self._producer = self._admin = None
        if producer is not None:
            producer.close(timeout=timeout)
        if admin is not None:
            admin.close()

    def __enter__(self) -> KafkaBus:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("bus is closed")


class KafkaBusConsumer:
    """One member of a consumer group (kafka-python's KafkaConsumer, subscribed). Not
    thread-safe, like the Consumer protocol says."""

    def __init__(self, consumer: KafkaConsumer, on_commit_failure: FailureHook | None = None) -> None:
        self._consumer = consumer
        self.commits = AsyncCommits(consumer, on_commit_failure)
        self._closed = False

    def poll(self, timeout: float, max_messages: int = 500) -> list[Message]:
        self._check_open()
        batches = self._consumer.poll(timeout_ms=max(0, int(timeout * 1000)), max_records=max_messages)
        # Positional, and no generator for the (usually absent) headers: this runs per record.
        return [
            Message(
                r.topic,
                r.partition,
                r.offset,
                None if r.key is None else r.key.decode("utf-8", errors="replace"),
                r.value if r.value is not None else b"",
                tuple((name, v if v is not None else b"") for name, v in r.headers) if r.headers else (),
                r.timestamp / 1000.0,
            )
            for records in batches.values()
            for r in records
        ]

    def commit(self, messages: Sequence[Message]) -> None:
        """Commit, per partition, the offset after the highest message given. Does not wait
        for the broker: a commit that fails is logged, and its messages come again."""
        self._check_open()
        latest: dict[TopicPartition, int] = {}
        for m in messages:
            tp = TopicPartition(m.topic, m.partition)
            latest[tp] = max(latest.get(tp, -1), m.offset + 1)
        # A rebalance in a poll since these messages came (the alerting service fetches its
        # next batch while storing one) may have moved a partition to another member, who
        # starts it from the last commit. The broker would take our commit all the same and
        # could overwrite the new owner's: those messages are left to it instead.
        owned = self._consumer.assignment()
        if gone := [tp for tp in latest if tp not in owned]:
            log.info("not committing %s: no longer assigned to this member", gone)
            for tp in gone:
                del latest[tp]
        if latest:
            self.commits.commit(latest)

    def seek_to_committed(self) -> None:
        """Every assigned partition back to its committed offset (the beginning when the group
        never committed there, as auto_offset_reset=earliest would), once the commits asked
        for so far are stored."""
        self._check_open()
        self.commits.settle(before="rewinding")  # if it fails, the broker's older offsets
        # Bounded: kafka-python retries a fetch of committed offsets forever while the broker
        # is away; KafkaTimeoutError lets the caller drop this consumer instead of hanging.
        deadline = time.monotonic() + FINISH_TIMEOUT_MS / 1000
        for tp in self._consumer.assignment():
            left_ms = max(int((deadline - time.monotonic()) * 1000), 1)
            committed = self._consumer.committed(tp, timeout_ms=left_ms)
            if committed is None or committed < 0:
                self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, committed)

    def close(self) -> None:
        """Finish the commits asked for, then leave the group (without committing anything
        more). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.commits.settle(before="closing")
        self._consumer.close(autocommit=False)

    def __enter__(self) -> KafkaBusConsumer:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("consumer is closed")


class _CommitBeforeRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Called by kafka-python inside `poll` when the group moves partitions: what was processed
    on them is committed before the next member starts reading them."""

    def __init__(self, commits: AsyncCommits) -> None:
        self._commits = commits

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._commits.settle(revoked, before=f"giving up {len(revoked)} partitions")
        self._commits.forget(revoked)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        pass

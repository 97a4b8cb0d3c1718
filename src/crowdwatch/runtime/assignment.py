"""Which cameras a worker runs, decided by Kafka's own group assignment (DESIGN 6, scale-out).

The compacted `cameras` topic (6 partitions, key = camera id, value = the camera's definition as
CameraConfig JSON, a tombstone when the camera is gone) is the source of truth for which cameras
exist: `publish_cameras` writes the cameras of a config there. Every worker started with
`--assign kafka` is a member of the consumer group `crowdwatch-workers` subscribed to that topic;
the partitions Kafka gives a member are its cameras. A worker that dies stops heartbeating, the
group coordinator gives its partitions to the others after the session timeout, and they start
its cameras. No scheduler of our own.

`KafkaCameraAssignment` owns one KafkaConsumer on one thread (kafka-python consumers are not
thread-safe). After each assignment it reads the assigned partitions from the beginning to their
end (a compacted topic: the newest record per key is the camera's definition; tombstones delete),
then runs exactly those cameras with `fleet.set_cameras`, and keeps following the topic so that
new, changed and removed cameras apply while running. Offsets are never committed: every
assignment is read again from the start.

Revocation: kafka-python rebalances eagerly, so *every* rebalance first revokes every partition
of every member and then assigns the new set, usually within the same poll. Stopping cameras on
revoke would restart every camera of every worker whenever a worker joins or leaves, and a
restarted camera loses its gathering state (an ongoing gathering would become a new episode and
a second alert). So revoked cameras keep running until the new assignment is known; then
`set_cameras` stops the cameras that moved away and leaves the others alone (the sticky assignor
keeps most partitions where they were). If no assignment follows within the session timeout
(the broker is unreachable), the cameras still keep running: when Kafka is down for every
worker, stopping them would blind every camera for the whole outage and lose the gatherings that
the bus's spool exists to keep (and an ongoing gathering would restart as a new episode). The
price, when only this worker lost Kafka: the group gives its cameras to another worker, and they
run on both until this one rejoins and its new assignment stops them (their spooled events then
arrive late, as a second alert at worst). A warning says so once the session timeout has passed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import ValidationError

from crowdwatch.bus.kafka import CAMERAS, DEFAULT_TOPICS, KafkaBus, TopicSpec, connection_options
from crowdwatch.config.backends import KafkaBusConfig
from crowdwatch.config.camera import CameraConfig
from crowdwatch.config.root import AppConfig
from crowdwatch.core.redact import redact_url
from crowdwatch.runtime.build import camera_analysis

log = logging.getLogger(__name__)

WORKER_GROUP: Final = "crowdwatch-workers"
# The broker refuses sessions below group.min.session.timeout.ms (default 6000). 8 s: a dead
# worker's cameras move after 8 s plus a rebalance, while a GC pause or a slow frame does not
# cost a healthy worker its cameras.
SESSION_TIMEOUT_MS: Final = 8000
HEARTBEAT_INTERVAL_MS: Final = 2000
# After a failed apply (e.g. a model not fetched here), the assignment is applied again this often:
# what was fixed meanwhile (the model fetched) is taken up without a rebalance.
APPLY_RETRY_S: Final = 30.0


class CameraTarget(Protocol):
    """What the assignment drives: `CameraFleet` (run exactly these cameras)."""

    def set_cameras(self, cameras: Iterable[CameraConfig]) -> None: ...


def _kafka_config(config: AppConfig) -> KafkaBusConfig:
    if not isinstance(config.bus, KafkaBusConfig):
        raise ValueError(f"camera assignment needs `bus: {{type: kafka}}`, not {config.bus.type!r}")
    return config.bus


def cameras_topic_spec(topic: str = CAMERAS) -> TopicSpec:
    """The `cameras` topic's spec (compacted, 6 partitions) under `topic`'s name."""
    spec = DEFAULT_TOPICS[CAMERAS]
    return TopicSpec(topic, spec.partitions, compacted=True, config=spec.config)


def ensure_cameras_topic(bus_config: KafkaBusConfig, topic: str = CAMERAS) -> None:
    """Create the compacted cameras topic unless it exists (and wait for its leaders)."""
    with KafkaBus(
        connection_options(bus_config),
        topics={topic: cameras_topic_spec(topic)},
        replication_factor=bus_config.replication_factor,
        request_timeout_ms=int(bus_config.request_timeout_s * 1000),
    ) as bus:
        bus.ensure_topics([topic])


# --- publishing ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Camera ids written (new or changed), left as they were, and deleted (tombstoned)."""

    written: tuple[str, ...]
    unchanged: tuple[str, ...]
    removed: tuple[str, ...]


def read_topic(
    bus_config: KafkaBusConfig, topic: str = CAMERAS, *, timeout_s: float = 30.0
) -> dict[str, bytes]:
    """The newest value of every key of the topic, read from the beginning to the current end
    (outside any consumer group); keys whose newest record is a tombstone are left out."""
    consumer = KafkaConsumer(group_id=None, enable_auto_commit=False, **connection_options(bus_config))
    try:
        deadline = time.monotonic() + timeout_s
        partitions = consumer.partitions_for_topic(topic)
        while not partitions:
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic!r} has no partitions after {timeout_s:g} s")
            time.sleep(0.1)  # waiting for the broker's metadata; nothing to wait on instead
            partitions = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends: dict[TopicPartition, int] = consumer.end_offsets(tps)
        latest: dict[str, bytes | None] = {}
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read topic {topic!r} to its end within {timeout_s:g} s")
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    if r.key is not None:
                        latest[r.key.decode("utf-8", errors="replace")] = r.value
        return {k: v for k, v in latest.items() if v is not None}
    finally:
        consumer.close(autocommit=False)


def publish_cameras(config: AppConfig, *, topic: str = CAMERAS, timeout_s: float = 30.0) -> PublishResult:
    """Make the cameras topic hold exactly the cameras of `config`: write each camera's
    definition (key = camera id) unless the topic already has it byte for byte, and a tombstone
    for every camera id in the topic that the config no longer has."""
    bus_config = _kafka_config(config)
    ensure_cameras_topic(bus_config, topic)
    current = read_topic(bus_config, topic, timeout_s=timeout_s)
    wanted = {c.id: c.model_dump_json().encode("utf-8") for c in config.cameras}
    written = tuple(cid for cid, value in wanted.items() if current.get(cid) != value)
    unchanged = tuple(cid for cid in wanted if cid not in written)
    removed = tuple(sorted(cid for cid in current if cid not in wanted))
    producer = KafkaProducer(
        acks="all",
        retries=5,
        linger_ms=5,
        request_timeout_ms=int(bus_config.request_timeout_s * 1000),
        max_block_ms=int(bus_config.max_block_s * 1000),
        **connection_options(bus_config),
    )
    try:
        futures = [producer.send(topic, key=cid.encode("utf-8"), value=wanted[cid]) for cid in written]
        futures += [producer.send(topic, key=cid.encode("utf-8"), value=None) for cid in removed]
        producer.flush(timeout=timeout_s)
        for future in futures:
            future.get(timeout=timeout_s)  # raises what the broker said
    finally:
        producer.close(timeout=timeout_s)
    for cid in written:
        log.info("camera %s: definition published (%s)", cid, redact_url(_url_of(config, cid)))
    for cid in removed:
        log.info("camera %s: removed (tombstone published)", cid)
    return PublishResult(written, unchanged, removed)


def _url_of(config: AppConfig, camera_id: str) -> str:
    return next(c.url for c in config.cameras if c.id == camera_id)


# --- the assigned partitions' cameras -------------------------------------------------------


class CameraTable:
    """The newest valid camera definition per key, per assigned partition. No I/O; not
    thread-safe (the consumer thread owns it)."""

    def __init__(self, config: AppConfig, on_invalid: Callable[[], None] | None = None) -> None:
        self._config = config
        self._partitions: dict[int, dict[str, CameraConfig]] = {}
        self._on_invalid = on_invalid

    def reset(self, partitions: Iterable[int]) -> None:
        """Forget everything; hold exactly these (empty) partitions."""
        self._partitions = {p: {} for p in partitions}

    @property
    def partitions(self) -> frozenset[int]:
        return frozenset(self._partitions)

    def put(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        """Apply one record. A tombstone deletes the camera; an invalid definition is logged
        (camera id, partition, offset and the problems, never the values) and the camera is not
        run, as the newest record is the truth and it cannot be run."""
        cameras = self._partitions.get(partition)
        if cameras is None:  # not (or no longer) ours
            return
        if key is None:
            self._invalid("?", partition, offset, "record has no key (the key must be the camera id)")
            return
        camera_id = key.decode("utf-8", errors="replace")
        if value is None:
            if cameras.pop(camera_id, None) is not None:
                log.info("camera %s: removed from the cameras topic", camera_id)
            return
        try:
            camera = CameraConfig.model_validate_json(value)
            if camera.id != camera_id:
                raise ValueError(f"the definition's id is {camera.id!r}, but the record key is {camera_id!r}")
            camera_analysis(camera, self._config.rules, self._config.counting)  # zones build
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(record)'}: {e['msg']}"
                for e in exc.errors(include_url=False, include_input=False, include_context=False)
            )
            cameras.pop(camera_id, None)
            self._invalid(camera_id, partition, offset, problems)
            return
        except Exception as exc:  # a bad record must never stop the worker
            cameras.pop(camera_id, None)
            self._invalid(camera_id, partition, offset, f"{type(exc).__name__}: {exc}")
            return
        cameras[camera_id] = camera

    def cameras(self) -> dict[str, CameraConfig]:
        return {cid: cam for p in sorted(self._partitions) for cid, cam in self._partitions[p].items()}

    def _invalid(self, camera_id: str, partition: int, offset: int, why: str) -> None:
        log.error(
            "camera %s: invalid definition at partition %d offset %d skipped: %s",
            camera_id,
            partition,
            offset,
            why,
        )
        if self._on_invalid is not None:
            self._on_invalid()


class AssignmentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.cameras = Gauge(
            "crowdwatch_assigned_cameras",
            "Cameras this worker runs by Kafka group assignment.",
            registry=registry,
        )
        self.partitions = Gauge(
            "crowdwatch_assigned_partitions",
            "Partitions of the cameras topic assigned to this worker.",
            registry=registry,
        )
        self.invalid = Counter(
            "crowdwatch_camera_records_invalid_total",
            "Camera definitions in the cameras topic that were skipped as invalid.",
            registry=registry,
        )
        self.rebalances = Counter(
            "crowdwatch_camera_assignments_total",
            "Partition assignments received from the consumer group.",
            registry=registry,
        )


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Called by kafka-python inside `poll`, on the consumer's thread: only records what
    happened; the poll loop acts on it."""

    def __init__(self, owner: KafkaCameraAssignment) -> None:
        self._owner = owner

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._owner._on_revoked(revoked)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._owner._on_assigned(assigned)


class KafkaCameraAssignment:
    """Runs, on `fleet`, the cameras of the `cameras` topic partitions that the consumer group
    `group` assigns to this process. `start()` returns at once; the consumer lives on its own
    thread until `stop()`, which leaves the group (the others take the cameras over at once)."""

    def __init__(
        self,
        config: AppConfig,
        fleet: CameraTarget,
        *,
        registry: CollectorRegistry | None = None,
        topic: str = CAMERAS,
        group: str = WORKER_GROUP,
        session_timeout_ms: int = SESSION_TIMEOUT_MS,
        heartbeat_interval_ms: int = HEARTBEAT_INTERVAL_MS,
        poll_timeout_s: float = 0.5,
        retry_backoff_s: float = 2.0,
    ) -> None:
        self._bus_config = _kafka_config(config)
        if not heartbeat_interval_ms < session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be below session_timeout_ms")
        self._fleet = fleet
        self.topic = topic
        self.group = group
        self._session_s = session_timeout_ms / 1000
        self._consumer_options: dict[str, Any] = {
            **connection_options(self._bus_config),
            "group_id": group,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "session_timeout_ms": session_timeout_ms,
            "heartbeat_interval_ms": heartbeat_interval_ms,
            "request_timeout_ms": session_timeout_ms + 5000,
            "reconnect_backoff_max_ms": 2000,
            "partition_assignment_strategy": (StickyPartitionAssignor, RangePartitionAssignor),
        }
        self._poll_ms = int(poll_timeout_s * 1000)
        self._backoff_s = retry_backoff_s
        self.metrics = AssignmentMetrics(registry if registry is not None else CollectorRegistry())
        self._table = CameraTable(config, on_invalid=self.metrics.invalid.inc)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._applied: dict[str, CameraConfig] = {}
        self.caught_up = threading.Event()  # set once the first assignment has been applied
        # consumer-thread state, set by the listener
        self._new_assignment: set[TopicPartition] | None = None
        self._unconfirmed_since: float | None = None
        self._unconfirmed_told = False
        self._catchup: dict[TopicPartition, int] | None = None
        self._retry_at: float | None = None  # when to apply the assignment again after a failure

    # --- public -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(target=self._run, name="camera-assignment", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Leave the group and stop following the topic. The cameras keep running: the caller
        stops the fleet."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def camera_ids(self) -> list[str]:
        """The cameras this worker was last told to run."""
        with self._lock:
            return sorted(self._applied)

    # --- the consumer thread ----------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ensure_cameras_topic(self._bus_config, self.topic)
                consumer = KafkaConsumer(**self._consumer_options)
            except Exception as exc:  # broker down at start: keep trying
                log.warning("camera assignment: cannot reach Kafka (%s); retrying", exc)
                self._start_unconfirmed()
                self._unconfirmed(time.monotonic())
                self._stop.wait(self._backoff_s)
                continue
            try:
                consumer.subscribe([self.topic], listener=_Listener(self))
                log.info("camera assignment: joined group %s on topic %s", self.group, self.topic)
                while not self._stop.is_set():
                    self._step(consumer)
            except Exception:
                log.exception("camera assignment: consumer failed; rejoining in %.1f s", self._backoff_s)
                self._start_unconfirmed()
                self._unconfirmed(time.monotonic())
                self._stop.wait(self._backoff_s)
            finally:
                self._new_assignment = None
                self._catchup = None
                try:
                    consumer.close(autocommit=False)  # leaves the group: a rebalance starts now
                except Exception:
                    log.warning("camera assignment: closing the consumer failed", exc_info=True)
        self.metrics.partitions.set(0)

    def _step(self, consumer: KafkaConsumer) -> None:
        batches: Mapping[TopicPartition, list[Any]] = consumer.poll(timeout_ms=self._poll_ms)
        assigned, self._new_assignment = self._new_assignment, None
        if assigned is not None:
            # Read the new assignment from the start; what this poll returned is read again.
            self.metrics.rebalances.inc()
            self.metrics.partitions.set(len(assigned))
            self._table.reset(tp.partition for tp in assigned)
            tps = sorted(assigned, key=lambda tp: tp.partition)
            if tps:
                consumer.seek_to_beginning(*tps)
            self._catchup = dict(consumer.end_offsets(tps)) if tps else {}
            self._unconfirmed_since = None
            log.info(
                "camera assignment: partitions %s of %s assigned", [tp.partition for tp in tps], self.topic
            )
            batches = {}
        for tp, records in batches.items():
            for r in records:
                self._table.put(tp.partition, r.offset, r.key, r.value)
        if self._catchup is not None:
            if all(consumer.position(tp) >= end for tp, end in self._catchup.items()):
                self._catchup = None
                self._apply(self._table.cameras())
        elif batches or self.retry_due(time.monotonic()):
            self._apply(self._table.cameras())
        self._unconfirmed(time.monotonic())

    def retry_due(self, now: float) -> bool:
        """Whether the last apply failed and it is time to try the assignment again."""
        return self._retry_at is not None and now >= self._retry_at

    def _apply(self, wanted: dict[str, CameraConfig]) -> None:
        with self._lock:
            before = self._applied
        if wanted == before and self.caught_up.is_set() and self._retry_at is None:
            return
        for cid in sorted(wanted.keys() - before.keys()):
            log.info("camera %s: assigned to this worker (%s)", cid, redact_url(wanted[cid].url))
        for cid in sorted(before.keys() - wanted.keys()):
            log.info("camera %s: no longer assigned to this worker", cid)
        try:
            self._fleet.set_cameras(wanted.values())
        except Exception:  # keep following the topic, and try again now and then
            self._retry_at = time.monotonic() + APPLY_RETRY_S
            log.exception(
                "camera assignment: applying %d camera(s) failed; trying again in %.0f s",
                len(wanted),
                APPLY_RETRY_S,
            )
        else:
            self._retry_at = None
        with self._lock:
            self._applied = dict(wanted)
        self.metrics.cameras.set(sum(1 for c in wanted.values() if c.enabled))
        self.caught_up.set()

    def _unconfirmed(self, now: float) -> None:
        """Called while no assignment confirms the cameras (Kafka unreachable, or a rebalance
        under way). They keep running: see the module doc. Said once per spell."""
        since = self._unconfirmed_since
        if since is None or self._unconfirmed_told or now - since <= self._session_s:
            return
        self._unconfirmed_told = True
        if self._applied:
            log.warning(
                "camera assignment: no assignment for %.0f s (Kafka unreachable?); the %d camera(s) "
                "here keep running and their events are spooled; should the group have given them "
                "to another worker meanwhile, they run there too until this worker rejoins",
                now - since,
                len(self._applied),
            )

    # --- listener callbacks (consumer thread, inside poll) -----------------------------------

    def _start_unconfirmed(self) -> None:
        if self._unconfirmed_since is None:
            self._unconfirmed_since = time.monotonic()
            self._unconfirmed_told = False

    def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            self._start_unconfirmed()
        self._catchup = None  # a catch-up in progress is void: a new assignment follows

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        self._new_assignment = set(assigned)

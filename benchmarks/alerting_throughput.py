"""Alerting consumer throughput and latency: consume -> decode/validate -> route -> store, through
one AlertingService (one consumer process), over real Kafka + Redis next to the in-memory pair,
in the same run.

    scripts/services start            # Kafka on 127.0.0.1:19092, Redis on 127.0.0.1:16379
    .venv/bin/python benchmarks/alerting_throughput.py --events 30000 \\
        --kafka 127.0.0.1:19092 --redis redis://127.0.0.1:16379/0 --json out/alerting.json

Modes, each per backend pair (bus/store):

drain  N events are produced first (Kafka: into fresh uuid-named topics; memory: a fresh bus),
       then one service consumes them alone, with a fresh consumer group per pair. events/s is
       counted from the end of its first batch (group join and first fetch excluded) to the
       last commit. Latency in this mode is poll -> stored: from the poll that returned a
       message to its result being in the store, without the backlog wait.
live   a producer (a separate process for Kafka, as a worker would be; a thread for the memory
       bus) publishes at a fixed rate for a bounded time while the service consumes. Latency is
       event time (set when published) -> the result in the store: end to end through the bus.

The loop is AlertingService.run's: run_once (poll, handle, commit) then tick (escalations; the
SLAs are an hour, so none fall due). The event mix: many cameras and zones, each zone going
through episodes of started, ~`--updates` updated, ended; `--status-share` of camera status
events on the camera-status topic. Events are CloudEvents from crowdwatch.core.codec, schema
validated by the service as in production.

Also reported: where the time goes (poll / handle+store / commit / tick, plus the client's
and the Redis server's CPU, Redis commands per event), the per-event cost of decode and
validation alone, and with `--profile FILE` a cProfile run of the Kafka/Redis drain (a separate
run, not the one timed), summarised by package.

Everything is bounded: event counts, a deadline per run (`--deadline`), a bounded live phase.
Only 127.0.0.1/localhost services are accepted. Redis keys use a fresh prefix and Kafka topics a
fresh suffix; both are deleted afterwards.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import gc
import io
import json
import multiprocessing as mp
import os
import pstats
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from kafka import KafkaAdminClient, KafkaProducer
from prometheus_client import CollectorRegistry

from crowdwatch.alerting.fastdecode import decode_valid
from crowdwatch.alerting.geoindex import Boundary, ShapelyGeoIndex
from crowdwatch.alerting.metrics import AlertingMetrics
from crowdwatch.alerting.service import DEFAULT_BATCH_SIZE, AlertingService
from crowdwatch.alerting.validate import validate_envelope
from crowdwatch.bus.base import CAMERA_STATUS, CROWD_EVENTS, Consumer, EventBus, Headers, Message
from crowdwatch.bus.kafka import DEFAULT_TOPICS, KafkaBus, TopicSpec
from crowdwatch.bus.memory import MemoryBus
from crowdwatch.config.backends import RedisStoreConfig
from crowdwatch.config.process import GcConfig
from crowdwatch.core import codec
from crowdwatch.core.routing import CenterDirectory, CenterInfo, Router
from crowdwatch.core.types import CameraStatusEvent, CrowdEvent, EventType, GeoPoint, Severity
from crowdwatch.runtime import gc_tuning
from crowdwatch.store.base import AlertChange, AlertStore, BatchApplyError, PendingEvents, RouteFn
from crowdwatch.store.memory import MemoryAlertStore
from crowdwatch.store.redis import RedisAlertStore

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
ROADMAP_TARGET = 20_000  # events/s per consumer process
Event = CrowdEvent | CameraStatusEvent

# --- the map and the event mix --------------------------------------------------------------

# One district 120.00..120.16 x 30.00..30.08, four streets side by side, each cut into four
# communities. SLAs of an hour: no escalation falls due during a run.
SLA_S = 3600.0
DISTRICT = (120.00, 30.00, 120.16, 30.08)


def _box(lon0: float, lat0: float, lon1: float, lat1: float) -> dict[str, Any]:
    ring = [[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]
    return {"type": "Polygon", "coordinates": [ring]}


def bench_router() -> Router:
    infos = [CenterInfo("district", "District", "district", None, SLA_S)]
    boundaries = [Boundary("district", "district", _box(*DISTRICT))]
    for s in range(4):
        lon0 = 120.00 + 0.04 * s
        sid = f"street-{s}"
        infos.append(CenterInfo(sid, f"Street {s}", "street", "district", SLA_S))
        boundaries.append(Boundary(sid, "street", _box(lon0, 30.00, lon0 + 0.04, 30.08)))
        for c in range(4):
            cid = f"community-{s}-{c}"
            c_lon, c_lat = lon0 + 0.02 * (c % 2), 30.00 + 0.04 * (c // 2)
            infos.append(CenterInfo(cid, f"Community {s}.{c}", "community", sid, SLA_S))
            boundaries.append(Boundary(cid, "community", _box(c_lon, c_lat, c_lon + 0.02, c_lat + 0.04)))
    return Router(CenterDirectory(infos), ShapelyGeoIndex(boundaries), max_km=2.0)


@dataclass
class _Zone:
    camera: str
    zone: str
    location: GeoPoint
    episode_start: float | None = None
    seq: int = 0
    left: int = 0
    peak: float = 0.0
    count: float = 0.0


class EventMix:
    """Deterministic (seeded) stream of events over `cameras` x `zones` zones: each zone runs
    episodes of started, about `updates` updated (uniform in [updates/2, 3*updates/2]), ended;
    a share of camera status events. `next(ts)` gives (topic, key, event) for time `ts`, which
    must not go backwards."""

    def __init__(self, cameras: int, zones: int, updates: int, status_share: float, seed: int) -> None:
        self._rng = random.Random(seed)
        lon0, lat0, lon1, lat1 = DISTRICT
        self._zones: list[_Zone] = []
        self._cameras: list[str] = []
        self._offline: set[str] = set()
        for i in range(cameras):
            camera = f"cam-{i:04d}"
            # Some cameras a little outside the district: routed to the nearest street.
            lon = self._rng.uniform(lon0 - 0.005, lon1 + 0.005)
            location = GeoPoint(lat=round(self._rng.uniform(lat0, lat1), 6), lon=round(lon, 6))
            self._cameras.append(camera)
            self._zones.extend(_Zone(camera, f"zone-{j}", location) for j in range(zones))
        self._updates = max(1, updates)
        self._status_share = status_share
        self.types: collections.Counter[str] = collections.Counter()

    def next(self, ts: float) -> tuple[str, str, Event]:
        rng = self._rng
        if rng.random() < self._status_share:
            camera = rng.choice(self._cameras)
            if camera in self._offline:
                self._offline.discard(camera)
                status = CameraStatusEvent(EventType.CAMERA_ONLINE, camera, ts, "frames again")
            else:
                self._offline.add(camera)
                status = CameraStatusEvent(EventType.CAMERA_OFFLINE, camera, ts, "no frames for 20 s")
            self.types[status.type.value] += 1
            return CAMERA_STATUS, camera, status
        z = rng.choice(self._zones)
        if z.episode_start is None:
            etype = EventType.GATHERING_STARTED
            z.episode_start, z.seq, z.peak, z.count = ts, 0, 0.0, rng.uniform(30, 40)
            z.left = rng.randint(max(1, self._updates // 2), self._updates * 3 // 2 + 1)
        elif z.left > 0:
            etype = EventType.GATHERING_UPDATED
            z.seq += 1
            z.left -= 1
            z.count = min(200.0, max(20.0, z.count + rng.uniform(-4, 5)))
        else:
            etype = EventType.GATHERING_ENDED
            z.seq += 1
            z.count = rng.uniform(5, 19)
        z.peak = max(z.peak, z.count)
        severity = (
            Severity.CRITICAL
            if z.peak >= 90
            else Severity.HIGH
            if z.peak >= 60
            else Severity.MEDIUM
            if z.peak >= 45
            else Severity.LOW
        )
        event = CrowdEvent(
            type=etype,
            camera_id=z.camera,
            zone_id=z.zone,
            ts=ts,
            seq=z.seq,
            episode_start=z.episode_start,
            location=z.location,
            count=round(z.count, 1),
            density_per_m2=None,
            peak=round(z.peak, 1),
            rise_per_min=round(rng.uniform(0, 20), 1),
            severity=severity,
            trigger="count>=30",
            method="detector",
            model="yolov8s-person-onnx",
        )
        if etype is EventType.GATHERING_ENDED:
            z.episode_start = None
        self.types[etype.value] += 1
        return CROWD_EVENTS, z.camera, event


def encoded_events(n: int, args: argparse.Namespace) -> tuple[list[tuple[str, str, bytes]], dict[str, int]]:
    """`n` events with times 1 ms apart ending now, encoded once and reused by every pair."""
    mix = EventMix(args.cameras, args.zones, args.updates, args.status_share, args.seed)
    t0 = time.time() - n / 1000
    out = []
    for i in range(n):
        topic, key, event = mix.next(t0 + i / 1000)
        out.append((topic, key, codec.encode(event)))
    return out, dict(mix.types)


# --- instrumentation ------------------------------------------------------------------------


@dataclass
class Timing:
    """Filled by the wrappers below. Counters are reset when the measured window starts."""

    recording: bool = False
    # Wall time of each poll whose messages are not committed yet, oldest first: the service
    # stores the oldest while it fetches the next (so at most two), and commits it when done.
    polled_at: collections.deque[float] = field(default_factory=collections.deque)
    poll_s: float = 0.0
    commit_s: float = 0.0
    store_s: float = 0.0
    stored: int = 0  # results written (alert changes and camera statuses, stale ones too)
    changes: int = 0  # apply_event calls that changed an alert
    since_poll: list[float] = field(default_factory=list)
    since_event: list[float] = field(default_factory=list)

    def reset(self) -> None:
        self.poll_s = self.commit_s = self.store_s = 0.0
        self.stored = self.changes = 0
        self.since_poll.clear()
        self.since_event.clear()

    def record(self, started: float, event_times: Sequence[float], waited_s: float = 0.0) -> None:
        """Results for events of these times are in the store now (one store call, `started`,
        of which `waited_s` went to other work: the service's fetch of its next batch)."""
        self.store_s += time.perf_counter() - started - waited_s
        self.stored += len(event_times)
        if self.recording:
            now = time.time()
            polled_at = self.polled_at[0] if self.polled_at else now
            self.since_poll.extend(now - polled_at for _ in event_times)
            self.since_event.extend(now - ts for ts in event_times)


class TimedConsumer:
    def __init__(self, inner: Consumer, timing: Timing) -> None:
        self._inner = inner
        self._t = timing

    def poll(self, timeout: float, max_messages: int = 500) -> list[Message]:
        started = time.perf_counter()
        batch = self._inner.poll(timeout, max_messages)
        self._t.poll_s += time.perf_counter() - started
        if batch:
            self._t.polled_at.append(time.time())
        return batch

    def commit(self, messages: Sequence[Message]) -> None:
        started = time.perf_counter()
        self._inner.commit(messages)
        self._t.commit_s += time.perf_counter() - started
        if self._t.polled_at:
            self._t.polled_at.popleft()

    def seek_to_committed(self) -> None:
        self._inner.seek_to_committed()
        self._t.polled_at.clear()  # whatever was fetched comes again

    def close(self) -> None:
        self._inner.close()


class TimedBus:
    """Wraps a bus: topic names get a per-run suffix (fresh Kafka topics; identity for the memory
    bus) and the consumer is timed."""

    def __init__(self, inner: EventBus, timing: Timing, suffix: str = "") -> None:
        self.inner = inner
        self._t = timing
        self._suffix = suffix

    def name(self, topic: str) -> str:
        return f"{topic}-{self._suffix}" if self._suffix else topic

    def publish(self, topic: str, key: str, value: bytes, headers: Headers | None = None) -> None:
        self.inner.publish(self.name(topic), key, value, headers)

    def flush(self, timeout: float = 10.0) -> None:
        self.inner.flush(timeout)

    def consumer(self, topics: Sequence[str], group: str) -> Consumer:
        return TimedConsumer(self.inner.consumer([self.name(t) for t in topics], group), self._t)

    def close(self) -> None:
        self.inner.close()


class TimedStore:
    """Wraps an AlertStore: times the writes and records when each result is in the store."""

    def __init__(self, inner: AlertStore, timing: Timing) -> None:
        self.inner = inner
        self._t = timing

    def apply_event(self, event: CrowdEvent, decide: RouteFn, now: float) -> AlertChange | None:
        started = time.perf_counter()
        change = self.inner.apply_event(event, decide, now)
        self._t.record(started, [event.ts])
        if change is not None:
            self._t.changes += 1
        return change

    def apply_events(
        self, events: Sequence[CrowdEvent], decide: RouteFn, now: float
    ) -> list[AlertChange | None]:
        started = time.perf_counter()
        try:
            changes = self.inner.apply_events(events, decide, now)
        except BatchApplyError as exc:
            self._t.record(started, [e.ts for e in events[: len(exc.applied)]])
            raise
        self._t.record(started, [e.ts for e in events])
        self._t.changes += sum(1 for c in changes if c is not None)
        return changes

    def submit_events(self, events: Sequence[CrowdEvent], decide: RouteFn, now: float) -> PendingEvents:
        started = time.perf_counter()
        pending = self.inner.submit_events(events, decide, now)
        submitted = time.perf_counter()
        timing = self._t

        class Timed:
            def result(self) -> list[AlertChange | None]:
                waited = time.perf_counter() - submitted
                try:
                    changes = pending.result()
                except BatchApplyError as exc:
                    timing.record(started, [e.ts for e in events[: len(exc.applied)]], waited)
                    raise
                timing.record(started, [e.ts for e in events], waited)
                timing.changes += sum(1 for c in changes if c is not None)
                return changes

        return Timed()

    def record_camera_status(self, event: CameraStatusEvent) -> bool:
        started = time.perf_counter()
        kept = self.inner.record_camera_status(event)
        self._t.record(started, [event.ts])
        return kept

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def machine_cpu() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat; None where there is no /proc."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


class RedisProbe:
    """Commands processed and CPU used by the Redis server between start() and stop()."""

    def __init__(self, url: str | None) -> None:
        self._client = redis.Redis.from_url(url) if url else None
        self._start: tuple[float, float] = (0.0, 0.0)

    def _read(self) -> tuple[float, float]:
        assert self._client is not None
        stats, cpu = self._client.info("stats"), self._client.info("cpu")
        return float(stats["total_commands_processed"]), float(cpu["used_cpu_sys"]) + float(
            cpu["used_cpu_user"]
        )

    def start(self) -> None:
        if self._client is not None:
            self._start = self._read()

    def stop(self) -> dict[str, float]:
        if self._client is None:
            return {}
        commands, cpu = self._read()
        # The two INFO calls of this probe are commands too.
        return {"commands": commands - self._start[0] - 2, "cpu_s": cpu - self._start[1]}

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


# --- backends -------------------------------------------------------------------------------


@dataclass
class Backends:
    kafka: str | None
    redis_url: str | None
    created_topics: set[str] = field(default_factory=set)
    redis_prefixes: list[str] = field(default_factory=list)

    def topic_specs(self, suffix: str) -> dict[str, TopicSpec]:
        return {
            f"{t}-{suffix}": TopicSpec(f"{t}-{suffix}", s.partitions, s.compacted)
            for t, s in DEFAULT_TOPICS.items()
        }

    def kafka_bus(self, suffix: str, client_id: str) -> KafkaBus:
        assert self.kafka is not None
        specs = self.topic_specs(suffix)
        self.created_topics |= set(specs)
        return KafkaBus({"bootstrap_servers": [self.kafka], "client_id": client_id}, topics=specs)

    def store(self, kind: str) -> AlertStore:
        if kind == "memory":
            return MemoryAlertStore()
        assert self.redis_url is not None
        prefix = f"cwbench-{uuid.uuid4().hex[:12]}"
        self.redis_prefixes.append(prefix)
        return RedisAlertStore.from_config(RedisStoreConfig(url=self.redis_url, key_prefix=prefix))

    def cleanup(self) -> None:
        if self.redis_url and self.redis_prefixes:
            with redis.Redis.from_url(self.redis_url) as client:
                for prefix in self.redis_prefixes:
                    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
                    for i in range(0, len(keys), 1000):
                        client.delete(*keys[i : i + 1000])
        if self.kafka and self.created_topics:
            admin = KafkaAdminClient(bootstrap_servers=[self.kafka], client_id="cw-bench-cleanup")
            try:
                existing = set(admin.list_topics()) & self.created_topics
                if existing:
                    admin.delete_topics(sorted(existing))
            finally:
                admin.close()


def produce(bus: EventBus, events: Sequence[tuple[str, str, bytes]]) -> float:
    started = time.perf_counter()
    for topic, key, value in events:
        bus.publish(topic, key, value)
    bus.flush(timeout=120)
    return time.perf_counter() - started


def produce_in_batches(
    backends: Backends, events: Sequence[tuple[str, str, bytes]], batch_bytes: int
) -> float:
    """Produce with kafka-python's record batches capped at `batch_bytes` (1: one event per
    batch, as many cameras each sending a few events a second give the consumer), lz4 as the
    bus does."""
    producer = KafkaProducer(
        bootstrap_servers=[backends.kafka],
        acks="all",
        compression_type="lz4",
        linger_ms=0,
        batch_size=batch_bytes,
    )
    started = time.perf_counter()
    try:
        for topic, key, value in events:
            producer.send(topic, key=key.encode(), value=value)
        producer.flush(timeout=120)
    finally:
        producer.close()
    return time.perf_counter() - started


class GcClock:
    """Time the interpreter spends in the cyclic garbage collector while recording."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1

    def __enter__(self) -> GcClock:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def set_gc(mode: str) -> gc_tuning.GcState | None:
    """`tuned`: the collector as the roles set it once started (`crowdwatch.runtime.gc_tuning`,
    default `gc:` config; what exists now, the produced events included, is frozen as a role's
    start-up heap would be); `interpreter`: CPython's defaults, left alone. Undo with
    `gc_tuning.restore`."""
    return gc_tuning.apply(GcConfig()) if mode == "tuned" else None


def one_gc_mode(args: argparse.Namespace) -> str:
    """The setting of the runs made once (live, profile): `--gc both` makes them tuned."""
    return "interpreter" if args.gc == "interpreter" else "tuned"


def make_service(
    bus: TimedBus, store: TimedStore, errors: list[str], batch_size: int
) -> tuple[AlertingService, CollectorRegistry]:
    registry = CollectorRegistry()
    service = AlertingService(
        bus,
        store,
        bench_router(),
        time.time,
        group=f"cw-bench-{uuid.uuid4().hex[:12]}",
        on_error=lambda exc, msg: errors.append(repr(exc)),
        metrics=AlertingMetrics.create(registry),
        batch_size=batch_size,
    )
    return service, registry


def dlq_count(registry: CollectorRegistry) -> float:
    return sum(
        registry.get_sample_value("crowdwatch_alerting_dlq_messages_total", {"reason": r}) or 0.0
        for r in ("decode", "schema")
    )


# --- drain ----------------------------------------------------------------------------------


def drain(
    pair: str,
    events: Sequence[tuple[str, str, bytes]],
    backends: Backends,
    deadline_s: float,
    kafka_suffix: str | None,
    batch_size: int,
    profiler: cProfile.Profile | None = None,
    gc_mode: str = "tuned",
) -> dict[str, Any]:
    """One service consumes `events` (already in the topics of `kafka_suffix`, or published to a
    fresh memory bus here)."""
    bus_kind, store_kind = pair.split("/")
    timing, errors = Timing(), list[str]()
    if bus_kind == "memory":
        inner: EventBus = MemoryBus(max_messages_per_topic=max(1000, 2 * len(events)))
        produce(inner, events)
        bus = TimedBus(inner, timing)
    else:
        assert kafka_suffix is not None
        bus = TimedBus(backends.kafka_bus(kafka_suffix, "cw-bench-alerting"), timing, kafka_suffix)
    store = TimedStore(backends.store(store_kind), timing)
    service, registry = make_service(bus, store, errors, batch_size)
    probe = RedisProbe(backends.redis_url if store_kind == "redis" else None)
    total = len(events)
    done = 0
    deadline = time.monotonic() + deadline_s
    collector = GcClock()
    tuned = set_gc(gc_mode)
    try:
        # The first batch includes the group join and the first fetch: not timed. It is polled
        # one message at a time, or a full first batch would fetch and decode the next one
        # (the service's prefetch) before the clock starts, and those events would be counted
        # without their time.
        service._batch_size = 1
        while done == 0 and time.monotonic() < deadline:
            done += service.run_once(1.0)
            service.tick()
        service._batch_size = batch_size
        first = done
        timing.reset()
        timing.recording = True
        tick_s = 0.0
        probe.start()
        cpu0, proc0 = machine_cpu(), time.process_time()
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        with collector:
            while done < total and time.monotonic() < deadline:
                done += service.run_once(0.5)
                t = time.perf_counter()
                service.tick()
                tick_s += time.perf_counter() - t
        if profiler is not None:
            profiler.disable()
        elapsed = time.perf_counter() - started
        proc_s, cpu1 = time.process_time() - proc0, machine_cpu()
        redis_stats = probe.stop()
    finally:
        if tuned is not None:
            gc_tuning.restore(tuned)
        service.close()
        bus.close()
        store.inner.close()
        probe.close()
    measured = done - first
    handle_s = elapsed - timing.poll_s - timing.commit_s - tick_s
    result: dict[str, Any] = {
        "mode": "drain",
        "pair": pair,
        "events": total,
        "processed": done,
        "complete": done == total,
        "measured_events": measured,
        "seconds": round(elapsed, 3),
        "events_per_s": round(measured / elapsed) if elapsed > 0 else None,
        "latency": "poll -> stored",
        "p50_ms": ms(quantile(timing.since_poll, 0.50)),
        "p99_ms": ms(quantile(timing.since_poll, 0.99)),
        "max_ms": ms(max(timing.since_poll, default=None)),
        "alert_changes": timing.changes,
        "dlq": dlq_count(registry),
        "errors": errors[:5],
        "error_count": len(errors),
        "us_per_event": {
            "poll": round(1e6 * timing.poll_s / max(1, measured), 1),
            "handle (decode+validate+route+store+metrics)": round(1e6 * handle_s / max(1, measured), 1),
            "store (part of handle)": round(1e6 * timing.store_s / max(1, measured), 1),
            "commit": round(1e6 * timing.commit_s / max(1, measured), 1),
            "tick": round(1e6 * tick_s / max(1, measured), 1),
        },
        "client_cpu_share": round(proc_s / elapsed, 2) if elapsed > 0 else None,
        "gc": gc_mode,
        "gc_share": round(collector.seconds / elapsed, 3) if elapsed > 0 else None,
        "gc_collections": collector.collections,
    }
    if cpu0 is not None and cpu1 is not None and cpu1[1] > cpu0[1]:
        result["machine_cpu_busy"] = round((cpu1[0] - cpu0[0]) / (cpu1[1] - cpu0[1]), 2)
    if redis_stats:
        result["redis_commands_per_event"] = round(redis_stats["commands"] / max(1, measured), 2)
        result["redis_server_cpu_share"] = round(redis_stats["cpu_s"] / elapsed, 2)
    return result


# --- live -----------------------------------------------------------------------------------


def _publish_at_rate(
    publish: Callable[[str, str, bytes], None], rate: float, count: int, mix: EventMix
) -> dict[str, float]:
    """Publishes `count` events `1/rate` apart; each event's time is taken as it is published."""
    t0 = time.time()
    late_max = 0.0
    for i in range(count):
        due = t0 + i / rate
        now = time.time()
        if due > now:
            time.sleep(due - now)
            now = time.time()
        late_max = max(late_max, now - due)
        topic, key, event = mix.next(now)
        publish(topic, key, codec.encode(event))
    return {"publish_seconds": time.time() - t0, "producer_late_max_s": late_max}


def _warmup_event(ts: float) -> tuple[str, str, bytes]:
    event = CameraStatusEvent(EventType.CAMERA_ONLINE, "cam-warmup", ts, "benchmark warm-up")
    return CAMERA_STATUS, event.camera_id, codec.encode(event)


def _kafka_live_producer(
    kafka: str,
    suffix: str,
    rate: float,
    count: int,
    mix_args: tuple[int, int, int, float, int],
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    """In a process of its own, like a worker: warm up (topics, metadata, one warm-up message),
    say ready, wait for go, publish at the rate, flush."""
    specs = Backends(kafka, None).topic_specs(suffix)
    bus = KafkaBus({"bootstrap_servers": [kafka], "client_id": "cw-bench-producer"}, topics=specs)
    try:
        topic, key, value = _warmup_event(time.time())
        bus.publish(f"{topic}-{suffix}", key, value)
        bus.flush(30)
        ready.set()
        if not go.wait(120):
            return
        out = _publish_at_rate(
            lambda t, k, v: bus.publish(f"{t}-{suffix}", k, v), rate, count, EventMix(*mix_args)
        )
        bus.flush(60)
        results.put(out)
    finally:
        bus.close()


def live(pair: str, backends: Backends, args: argparse.Namespace, rate: float) -> dict[str, Any]:
    bus_kind, store_kind = pair.split("/")
    count = max(1, int(rate * args.live_seconds))
    mix_args = (args.cameras, args.zones, args.updates, args.status_share, args.seed + 1)
    timing, errors = Timing(), list[str]()
    suffix = uuid.uuid4().hex[:10]
    producer_out: dict[str, float] = {}
    if bus_kind == "memory":
        inner: EventBus = MemoryBus(max_messages_per_topic=max(1000, 2 * count))
        bus = TimedBus(inner, timing)
    else:
        bus = TimedBus(backends.kafka_bus(suffix, "cw-bench-alerting"), timing, suffix)
    store = TimedStore(backends.store(store_kind), timing)
    service, registry = make_service(bus, store, errors, args.batch_size)
    deadline = time.monotonic() + args.live_seconds + args.deadline
    worker: Any
    ctx = mp.get_context("spawn")
    gc_mode = one_gc_mode(args)
    tuned = set_gc(gc_mode)
    try:
        if bus_kind == "memory":
            go_thread = threading.Event()
            bus.publish(*_warmup_event(time.time()))

            def run_producer() -> None:
                go_thread.wait()
                producer_out.update(
                    _publish_at_rate(lambda t, k, v: inner.publish(t, k, v), rate, count, EventMix(*mix_args))
                )

            worker = threading.Thread(target=run_producer, daemon=True)
            worker.start()
            go: Any = go_thread
        else:
            assert backends.kafka is not None
            ready, go, results = ctx.Event(), ctx.Event(), ctx.Queue()
            worker = ctx.Process(
                target=_kafka_live_producer,
                args=(backends.kafka, suffix, rate, count, mix_args, ready, go, results),
                daemon=True,
            )
            worker.start()
            if not ready.wait(120):
                raise RuntimeError("live producer did not get ready within 120 s")
        # Join the group and consume the warm-up message before the clock starts.
        done = 0
        while done == 0 and time.monotonic() < deadline:
            done += service.run_once(0.5)
        timing.reset()
        timing.recording = True
        cpu0 = machine_cpu()
        started = time.perf_counter()
        go.set()
        while timing.stored < count and time.monotonic() < deadline:
            service.run_once(0.2)
            service.tick()
        elapsed = time.perf_counter() - started
        cpu1 = machine_cpu()
        if bus_kind == "memory":
            worker.join(timeout=10)
        else:
            try:
                producer_out = results.get(timeout=30)
            except Exception:
                producer_out = {}
            worker.join(timeout=30)
            if worker.is_alive():
                worker.terminate()
    finally:
        if tuned is not None:
            gc_tuning.restore(tuned)
        service.close()
        bus.close()
        store.inner.close()
    result: dict[str, Any] = {
        "mode": "live",
        "pair": pair,
        "rate_per_s": rate,
        "events": count,
        "processed": timing.stored,
        "complete": timing.stored >= count,
        "seconds": round(elapsed, 3),
        "events_per_s": round(timing.stored / elapsed) if elapsed > 0 else None,
        "latency": f"event time -> stored, at {rate:g}/s",
        "gc": gc_mode,
        "p50_ms": ms(quantile(timing.since_event, 0.50)),
        "p99_ms": ms(quantile(timing.since_event, 0.99)),
        "max_ms": ms(max(timing.since_event, default=None)),
        "poll_to_stored_p50_ms": ms(quantile(timing.since_poll, 0.50)),
        "dlq": dlq_count(registry),
        "errors": errors[:5],
        "error_count": len(errors),
        "producer": {k: round(v, 3) for k, v in producer_out.items()},
    }
    if cpu0 is not None and cpu1 is not None and cpu1[1] > cpu0[1]:
        result["machine_cpu_busy"] = round((cpu1[0] - cpu0[0]) / (cpu1[1] - cpu0[1]), 2)
    return result


# --- stages and profile ---------------------------------------------------------------------


def stage_costs(
    events: Sequence[tuple[str, str, bytes]], sample: int = 3000, rounds: int = 3
) -> dict[str, float]:
    """Per-event cost, in microseconds, of the service's decode steps alone: the best of
    `rounds` passes, since other work on the machine only ever adds time."""
    values = [v for _, _, v in events[:sample]]
    envelopes = [codec.loads(v) for v in values]
    router, point = bench_router(), GeoPoint(lat=30.03, lon=120.05)
    steps: dict[str, Callable[[], object]] = {
        "typed decode (the service's path for well-formed events)": lambda: [decode_valid(v) for v in values],
        "reference path, for comparison: json loads": lambda: [codec.loads(v) for v in values],
        "schema validation": lambda: [validate_envelope(e) for e in envelopes],  # type: ignore[func-returns-value]
        "from_envelope": lambda: [codec.from_envelope(e) for e in envelopes],
        "route (once per new alert)": lambda: [router.route("cam-x", point) for _ in values],
    }
    out: dict[str, float] = {}
    for name, step in steps.items():
        best = float("inf")
        for _ in range(rounds):
            started = time.perf_counter()
            step()
            best = min(best, time.perf_counter() - started)
        out[name] = round(1e6 * best / max(1, len(values)), 1)
    return out


def _area(filename: str, func: str) -> str:
    """The package a profiled function belongs to, for the summary."""
    if filename == "~":
        if any(s in func for s in ("recv", "send", "select", "poll", "epoll", "sendall", "connect")):
            return "socket I/O (C)"
        return "builtins (C)"
    path = filename.replace(os.sep, "/")
    if "/crowdwatch/" in path:
        rest = path.split("/crowdwatch/", 1)[1]
        parts = rest.split("/")
        return "crowdwatch/" + (parts[0] if len(parts) > 1 else rest)
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/benchmarks/" in path:
        return "benchmark wrappers"
    return "python stdlib: " + Path(path).stem


def profile_summary(profiler: cProfile.Profile, top: int = 25) -> dict[str, Any]:
    stats = pstats.Stats(profiler)
    raw: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values()) or 1.0
    areas: collections.Counter[str] = collections.Counter()
    for (filename, _, func), v in raw.items():
        areas[_area(filename, func)] += v[2]
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    return {
        "self_time_by_area": {k: round(v / total, 3) for k, v in areas.most_common(15)},
        "top_functions_by_self_time": text.getvalue(),
    }


# --- main -----------------------------------------------------------------------------------


def _check_local(kafka: str | None, redis_url: str | None) -> None:
    if kafka is not None:
        host = kafka.rsplit(":", 1)[0].strip("[]")
        if host not in LOCAL_HOSTS:
            sys.exit(f"--kafka must be on 127.0.0.1/localhost, not {kafka!r}")
    if redis_url is not None and urlsplit(redis_url).hostname not in LOCAL_HOSTS:
        sys.exit(f"--redis must be on 127.0.0.1/localhost, not {redis_url!r}")


def _table(rows: Sequence[dict[str, Any]]) -> str:
    head = (
        f"{'mode':<6} {'bus/store':<14} {'gc':<11} {'events':>7} {'events/s':>9} {'p50 ms':>9} "
        f"{'p99 ms':>9}  latency"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        flag = "" if r.get("complete") else "  (INCOMPLETE: deadline)"

        def f(v: Any) -> str:
            return "-" if v is None else str(v)

        lines.append(
            f"{r['mode']:<6} {r['pair']:<14} {r['gc']:<11} {r['processed']:>7} {f(r['events_per_s']):>9} "
            f"{f(r['p50_ms']):>9} {f(r['p99_ms']):>9}  {r['latency']}{flag}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=30_000, help="events per drain run (default 30000)")
    p.add_argument("--kafka", help="Kafka bootstrap HOST:PORT on 127.0.0.1 (default $CROWDWATCH_KAFKA)")
    p.add_argument("--redis", help="Redis URL on 127.0.0.1 (default $CROWDWATCH_REDIS)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument(
        "--pairs",
        default="memory/memory,memory/redis,kafka/memory,kafka/redis",
        help="bus/store pairs of the drain runs (those needing a missing service are skipped)",
    )
    p.add_argument("--live-pairs", default="memory/memory,kafka/redis", help="pairs of the live runs")
    p.add_argument(
        "--live-rate",
        type=float,
        default=0.0,
        help="live producer rate, events/s; 0 (default): half the drain rate measured for the same "
        "pair (100/s when that pair was not drained)",
    )
    p.add_argument("--live-seconds", type=float, default=15.0, help="live producer duration")
    p.add_argument("--no-live", action="store_true", help="drain runs only")
    p.add_argument(
        "--gc",
        choices=("tuned", "interpreter", "both"),
        default="tuned",
        help="garbage collector during the runs: tuned (default; as the roles set it, see "
        "crowdwatch.runtime.gc_tuning), interpreter (CPython's defaults), both (each drain pair "
        "under each, interpreter first; live runs tuned)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"AlertingService batch_size (its default: {DEFAULT_BATCH_SIZE})",
    )
    p.add_argument(
        "--producer-batch-bytes",
        type=int,
        default=0,
        help="cap the drain producer's Kafka record batches at this many bytes (1: one event per "
        "batch, as from many cameras at a few events a second); 0 (default): the bus's producer, "
        "whose batches hold ~24 events when it publishes as fast as it can",
    )
    p.add_argument("--cameras", type=int, default=200)
    p.add_argument("--zones", type=int, default=2, help="zones per camera")
    p.add_argument("--updates", type=int, default=30, help="mean updated events per episode")
    p.add_argument("--status-share", type=float, default=0.01, help="share of camera status events")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--deadline", type=float, default=240.0, help="seconds allowed per run before giving up")
    p.add_argument("--profile", type=Path, help="also profile a kafka/redis drain run; pstats file here")
    p.add_argument("--profile-events", type=int, default=10_000, help="events of the profiled run")
    args = p.parse_args(argv)
    args.kafka = args.kafka or os.environ.get("CROWDWATCH_KAFKA")
    args.redis = args.redis or os.environ.get("CROWDWATCH_REDIS")
    _check_local(args.kafka, args.redis)

    def available(pair: str) -> bool:
        bus_kind, store_kind = pair.split("/")
        return (bus_kind == "memory" or args.kafka is not None) and (
            store_kind == "memory" or args.redis is not None
        )

    asked = [x for x in args.pairs.split(",") if x]
    asked_live = [] if args.no_live else [x for x in args.live_pairs.split(",") if x]
    pairs = [x for x in asked if available(x)]
    live_pairs = [x for x in asked_live if available(x)]
    skipped = sorted({x for x in asked + asked_live if not available(x)})
    if args.profile is not None and not available("kafka/redis"):
        skipped.append("the profile (a kafka/redis drain)")
    if skipped:
        print(
            f"skipped, no Kafka or Redis given: {', '.join(skipped)} (pass --kafka/--redis or set "
            "CROWDWATCH_KAFKA/CROWDWATCH_REDIS: `scripts/services start` writes them to run/services.env)",
            file=sys.stderr,
        )
    backends = Backends(args.kafka, args.redis)
    events, mix = encoded_events(args.events, args)
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "settings": {
            k: getattr(args, k)
            for k in (
                "events",
                "batch_size",
                "cameras",
                "zones",
                "updates",
                "status_share",
                "live_rate",
                "live_seconds",
                "seed",
            )
        },
        "event_mix": mix,
        "target_events_per_s": ROADMAP_TARGET,
        "stage_us_per_event": stage_costs(events),
        "runs": [],
    }
    report["machine"]["loadavg_before"] = list(os.getloadavg())
    print(f"event mix: {mix}", file=sys.stderr)
    print(f"decode stages, us/event: {report['stage_us_per_event']}", file=sys.stderr)
    try:
        kafka_suffix = None
        if any(x.startswith("kafka/") for x in pairs):
            kafka_suffix = uuid.uuid4().hex[:10]
            producer = backends.kafka_bus(kafka_suffix, "cw-bench-producer")
            producer.ensure_topics()
            renamed = [(f"{t}-{kafka_suffix}", k, v) for t, k, v in events]
            if args.producer_batch_bytes:
                producer.close()
                seconds = produce_in_batches(backends, renamed, args.producer_batch_bytes)
            else:
                seconds = produce(producer, renamed)
                producer.close()
            report["kafka_produce_events_per_s"] = round(len(events) / seconds)
            print(f"produced {len(events)} events to Kafka in {seconds:.1f} s", file=sys.stderr)
        for pair in pairs:
            print(f"drain {pair} ...", file=sys.stderr, flush=True)
            for gc_mode in ("interpreter", "tuned") if args.gc == "both" else (args.gc,):
                run = drain(
                    pair, events, backends, args.deadline, kafka_suffix, args.batch_size, gc_mode=gc_mode
                )
                print(
                    f"  gc {gc_mode}: {run['events_per_s']} events/s, {run['gc_share']:.1%} in gc; "
                    f"{json.dumps(run['us_per_event'])}",
                    file=sys.stderr,
                )
                report["runs"].append(run)
        drained = {r["pair"]: r["events_per_s"] for r in report["runs"] if r["gc"] != "interpreter"}
        for pair in live_pairs:
            rate = args.live_rate or max(10.0, round(0.5 * (drained.get(pair) or 200)))
            print(f"live {pair} at {rate:g}/s for {args.live_seconds:g} s ...", file=sys.stderr, flush=True)
            report["runs"].append(live(pair, backends, args, rate))
        if args.profile is not None and available("kafka/redis"):
            print("profiling a kafka/redis drain ...", file=sys.stderr, flush=True)
            n = min(args.profile_events, len(events))
            suffix = uuid.uuid4().hex[:10]
            producer = backends.kafka_bus(suffix, "cw-bench-producer")
            producer.ensure_topics()
            produce(producer, [(f"{t}-{suffix}", k, v) for t, k, v in events[:n]])
            producer.close()
            profiler = cProfile.Profile()
            run = drain(
                "kafka/redis",
                events[:n],
                backends,
                args.deadline,
                suffix,
                args.batch_size,
                profiler,
                gc_mode=one_gc_mode(args),
            )
            profiler.dump_stats(str(args.profile))
            summary = profile_summary(profiler)
            report["profile"] = {
                "file": str(args.profile),
                "events_per_s_under_profiler": run["events_per_s"],
                **summary,
            }
            print(summary["top_functions_by_self_time"], file=sys.stderr)
            print("self time by area: " + json.dumps(summary["self_time_by_area"], indent=1), file=sys.stderr)
    finally:
        backends.cleanup()
    report["machine"]["loadavg_after"] = list(os.getloadavg())
    print(_table(report["runs"]))
    load = max(report["machine"]["loadavg_before"][0], report["machine"]["loadavg_after"][0])
    if load > (os.cpu_count() or 1):
        print(f"note: load average {load:.1f} on {os.cpu_count()} CPUs: other work shared the machine")
    best = max((r["events_per_s"] or 0 for r in report["runs"] if r["mode"] == "drain"), default=0)
    print(f"roadmap target: >= {ROADMAP_TARGET} events/s per consumer process; best drain here: {best}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

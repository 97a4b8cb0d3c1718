"""apply_event throughput of the alert stores (memory, Redis), single and several workers.

    .venv/bin/python benchmarks/store_throughput.py --events 20000
    .venv/bin/python benchmarks/store_throughput.py --redis redis://127.0.0.1:16379/0 --workers 4

Each worker is a thread; on Redis each has its own store instance (a Redis store per
"alerting worker", sharing one Redis), in memory they share the one store (it is one process's
store). The events are gathering updates spread over `--episodes` alerts, each worker taking its
own episodes (no contention) unless `--contended`, where all workers feed the same episodes:
every event changes its alert once and is deduplicated for the others, so the output gives both
calls per second and changes (events applied) per second. The Redis keys use a fresh prefix and
are deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from collections.abc import Callable

import redis

from crowdwatch.config.backends import RedisStoreConfig
from crowdwatch.core.routing import RouteDecision
from crowdwatch.core.types import CrowdEvent, EventType, GeoPoint, Severity
from crowdwatch.store.base import AlertStore
from crowdwatch.store.memory import MemoryAlertStore
from crowdwatch.store.redis import RedisAlertStore

T0 = 1_700_000_000.0


def event(episode: int, seq: int) -> CrowdEvent:
    return CrowdEvent(
        type=EventType.GATHERING_STARTED if seq == 0 else EventType.GATHERING_UPDATED,
        camera_id=f"cam-{episode % 50}",
        zone_id=f"zone-{episode}",
        ts=T0 + seq,
        seq=seq,
        episode_start=T0,
        location=GeoPoint(lat=31.2, lon=121.4),
        count=30.0 + seq % 7,
        density_per_m2=None,
        peak=40.0,
        rise_per_min=1.0,
        severity=Severity.MEDIUM,
        trigger="count>=30",
        method="detector",
        model="bench",
    )


def route(e: CrowdEvent) -> RouteDecision:
    return RouteDecision("c1", "inside:community", 120.0)


def run(
    make: Callable[[], AlertStore], events: int, episodes: int, workers: int, contended: bool
) -> tuple[float, float]:
    """(apply_event calls per second, alert changes per second)."""
    per_worker = events // workers
    stores = [make() for _ in range(workers)]
    start = threading.Barrier(workers + 1)
    changed = [0] * workers

    def work(i: int) -> None:
        store = stores[i]
        mine = range(episodes) if contended else range(i, episodes, workers)
        batch = [event(ep, seq) for seq in range(per_worker // len(mine) + 1) for ep in mine][:per_worker]
        start.wait()
        for e in batch:
            if store.apply_event(e, route, T0) is not None:
                changed[i] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    for s in stores:
        if isinstance(s, RedisAlertStore):
            s.close()
    return per_worker * workers / elapsed, sum(changed) / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--redis", help="Redis URL; without it only the memory store is measured")
    p.add_argument("--events", type=int, default=20_000, help="events in all (split over workers)")
    p.add_argument("--episodes", type=int, default=200, help="alerts the events are spread over")
    p.add_argument("--workers", type=int, default=1, help="threads, one store instance each")
    p.add_argument("--contended", action="store_true", help="all workers apply the same events")
    args = p.parse_args()

    memory = MemoryAlertStore()
    results = {
        "memory": run(lambda: memory, args.events, args.episodes, args.workers, args.contended),
    }
    if args.redis:
        config = RedisStoreConfig(url=args.redis, key_prefix=f"cwbench-{uuid.uuid4().hex}")
        try:
            results["redis"] = run(
                lambda: RedisAlertStore.from_config(config),
                args.events,
                args.episodes,
                args.workers,
                args.contended,
            )
        finally:
            with redis.Redis.from_url(args.redis) as client:
                keys = list(client.scan_iter(match=f"{config.key_prefix}:*", count=1000))
                for i in range(0, len(keys), 1000):
                    client.delete(*keys[i : i + 1000])
    settings = {k: getattr(args, k) for k in ("events", "episodes", "workers", "contended")}
    print(
        json.dumps(
            {
                "apply_event_per_s": {k: round(calls) for k, (calls, _) in results.items()},
                "changes_per_s": {k: round(changes) for k, (_, changes) in results.items()},
                **settings,
            }
        )
    )


if __name__ == "__main__":
    main()

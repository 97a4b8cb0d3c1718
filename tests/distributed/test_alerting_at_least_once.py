"""At-least-once end to end for `crowdwatch alerting` over Kafka and Redis (DESIGN 6): the
process is SIGKILLed while it works through a backlog (whatever it stored but had not committed
comes again), more events arrive while it is down, and a restarted process finishes the job.
Every episode ends up as exactly one alert reflecting its newest event; every event was applied
exactly once (the store dedupes redeliveries by the deterministic event id)."""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

from alerting.builders import T0, crowd_event
from bus.conftest import kafka_address
from crowdwatch.bus.base import CAMERA_STATUS, CROWD_EVENTS
from crowdwatch.bus.kafka import KafkaBus
from crowdwatch.config.backends import RedisStoreConfig
from crowdwatch.core import codec
from crowdwatch.core.types import CrowdEvent, EventType, GeoPoint, Severity
from crowdwatch.store.redis import RedisAlertStore
from store.conftest import drop_prefix, redis_url

from .support import (
    SOUTH_STREET,
    cli,
    commit_group_at_end,
    demo_centers,
    group_lag,
    kill,
    spawn,
    wait_for,
    write_yaml,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

CAMERAS, ZONES, EPISODES, EVENTS_PER_EPISODE = 5, 2, 3, 10  # 30 episodes, 300 events
START_DEADLINE_S = 120.0
FINISH_DEADLINE_S = 120.0


def episode_events(camera: str, zone: str, episode: int) -> list[CrowdEvent]:
    start = T0 + 1000 * episode
    events = []
    for seq in range(EVENTS_PER_EPISODE):
        kind = (
            EventType.GATHERING_STARTED
            if seq == 0
            else EventType.GATHERING_ENDED
            if seq == EVENTS_PER_EPISODE - 1
            else EventType.GATHERING_UPDATED
        )
        count = float(10 + seq + episode)
        events.append(
            replace(
                crowd_event(kind, seq),
                camera_id=camera,
                zone_id=zone,
                ts=start + seq,
                episode_start=start,
                location=GeoPoint(**SOUTH_STREET),
                count=count,
                peak=count,
                severity=Severity.LOW,
            )
        )
    return events


def alerting_config(prefix: str) -> dict[str, Any]:
    return {
        "cameras": [
            {
                "id": "unused",
                "url": "unused.mp4",
                "location": SOUTH_STREET,
                "zones": [{"id": "z", "polygon": [[0, 0], [10, 0], [10, 10]]}],
            }
        ],
        "centers": demo_centers(),
        "bus": {"type": "kafka", "bootstrap_servers": [kafka_address()]},
        "store": {"type": "redis", "url": redis_url(), "key_prefix": prefix},
        "metrics": {"enabled": False},
    }


def test_killed_alerting_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:6]
    prefix, group = f"cwtest-alo-{run}", f"alerting-alo-{run}"
    episodes = [
        episode_events(f"alo{run}-c{c}", f"z{z}", e)
        for c in range(CAMERAS)
        for z in range(ZONES)
        for e in range(EPISODES)
    ]
    everything = [ev for ep in episodes for ev in ep]
    assert len(everything) == 300
    # Before the kill: 20 episodes up to seq 7, interleaved. After it: their last two events
    # and 10 new episodes. So the store cannot hold every alert when the process dies.
    before = sorted((ev for ep in episodes[:20] for ev in ep if ev.seq < 8), key=lambda ev: ev.seq)
    after = [ev for ep in episodes[:20] for ev in ep if ev.seq >= 8] + [
        ev for ep in episodes[20:] for ev in ep
    ]
    assert len(before) + len(after) == len(everything)

    bootstrap = kafka_address()
    config = write_yaml(tmp_path / "alerting.yaml", alerting_config(prefix))
    store = RedisAlertStore.from_config(RedisStoreConfig(url=redis_url(), key_prefix=prefix))
    client = redis.Redis.from_url(redis_url())
    bus = KafkaBus({"bootstrap_servers": bootstrap, "client_id": "crowdwatch-test"})
    logs = [tmp_path / "alerting-1.log", tmp_path / "alerting-2.log"]
    procs: list[subprocess.Popen[bytes]] = []
    args = cli("--log-level", "INFO", "alerting", "-c", str(config), "--group", group, "--duration", "600")
    try:
        bus.ensure_topics([CROWD_EVENTS, CAMERA_STATUS])
        commit_group_at_end(bootstrap, group, [CROWD_EVENTS, CAMERA_STATUS])  # skip others' events

        def publish(events: list[CrowdEvent]) -> None:
            for ev in events:
                bus.publish(CROWD_EVENTS, ev.camera_id, codec.encode(ev))
            bus.flush()

        publish(before)
        procs.append(spawn(args, logs[0]))
        alerts_key = f"{prefix}:alerts"
        # Polled fast: the process is killed in the middle of its first batch (100 messages,
        # committed together), after it stored half of the 20 alerts it can open by then.
        wait_for(
            lambda: client.zcard(alerts_key) >= 10,
            "10 alerts in Redis",
            START_DEADLINE_S,
            every_s=0.002,
            alive=procs,
            logs=logs,
        )
        procs[0].kill()
        procs[0].wait(timeout=30)
        stored_at_kill = client.zcard(alerts_key)
        uncommitted_at_kill = group_lag(bootstrap, group, CROWD_EVENTS)
        assert 0 < stored_at_kill < len(episodes)

        publish(after)
        procs.append(spawn(args, logs[1]))

        def complete() -> bool:
            alerts = store.list_alerts(open_only=False)
            return len(alerts) == len(episodes) and all(
                a.last_event_seq == EVENTS_PER_EPISODE - 1 for a in alerts
            )

        wait_for(
            complete,
            "every episode's alert with its last event",
            FINISH_DEADLINE_S,
            alive=procs[1:],
            logs=logs,
        )
        wait_for(
            lambda: group_lag(bootstrap, group, CROWD_EVENTS) == 0,
            "the restarted process to commit everything",
            FINISH_DEADLINE_S,
            alive=procs[1:],
            logs=logs,
        )

        alerts = {a.id: a for a in store.list_alerts(open_only=False)}
        assert len(alerts) == len(episodes)  # one alert per episode, no more
        assert client.zcard(alerts_key) == len(episodes)
        for ep in episodes:
            last = ep[-1]
            alert = alerts[last.episode_key]
            assert (alert.camera_id, alert.zone_id, alert.episode_start) == (
                last.camera_id,
                last.zone_id,
                last.episode_start,
            )
            assert alert.last_event_id == last.id
            assert alert.count == last.count
            assert alert.peak == max(ev.peak for ev in ep)
            assert alert.gathering_ended
            assert (alert.origin_center_id, alert.route_reason) == ("south-street", "inside:street")
            # Each event applied exactly once: one audit entry per event id, none twice.
            applied = [dict(entry.extra).get("event_id") for entry in store.audit(alert.id)]
            applied = [event_id for event_id in applied if event_id is not None]
            assert applied == [ev.id for ev in ep], alert.id
        print(
            f"\nkilled with {stored_at_kill}/{len(episodes)} alerts stored and "
            f"{uncommitted_at_kill} event(s) uncommitted; all {len(everything)} events applied once"
        )
    finally:
        kill(procs)
        bus.close()
        store.close()
        client.close()
        drop_prefix(prefix)

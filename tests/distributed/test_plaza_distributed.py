"""The distributed pipeline gives the same alerts as the embedded one (DESIGN 1: same core,
same tests): `crowdwatch worker` (static) on the plaza clip and `crowdwatch alerting`, as
separate processes over Kafka and Redis, against `EmbeddedApp` in this process over the memory
bus and store, on the same configuration and the real detector.

Frame times are wall-clock time at the start of the clip plus video time, so the two runs'
episode starts differ by a constant: they are compared relative to the run's first episode."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from crowdwatch.bus.base import CAMERA_STATUS, CROWD_EVENTS
from crowdwatch.bus.kafka import KafkaBus
from crowdwatch.config.backends import RedisStoreConfig
from crowdwatch.config.root import parse_config
from crowdwatch.core.types import Alert
from crowdwatch.runtime.embedded import EmbeddedApp
from crowdwatch.store.redis import RedisAlertStore
from store.conftest import drop_prefix

from .support import REPO, cli, commit_group_at_end, group_lag, kill, spawn, tail, wait_for, write_yaml

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]

CLIP = REPO / "assets" / "vtest_plaza.mp4"
Key = tuple[str, str, str, str, float]


def offline_demo() -> dict[str, Any]:
    """configs/demo.yaml as a deterministic offline analysis of the clip."""
    data: dict[str, Any] = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    data["cameras"][0].update(url=str(CLIP), loop=False, realtime=False)
    data["metrics"] = {"enabled": False}
    return data


def keys(alerts: list[Alert]) -> list[Key]:
    """(camera, zone, routed center, route reason, episode start relative to the first one)."""
    assert alerts, "no alerts"
    first = min(a.episode_start for a in alerts)
    return sorted(
        (a.camera_id, a.zone_id, a.origin_center_id, a.route_reason, round(a.episode_start - first, 2))
        for a in alerts
    )


def test_worker_and_alerting_processes_raise_the_embedded_alerts(
    kafka_bootstrap: str, redis_server: str, tmp_path: Path, models_dir: Path
) -> None:
    bootstrap, store_url = kafka_bootstrap, redis_server
    embedded = EmbeddedApp(parse_config(offline_demo()), models_dir=models_dir)
    with embedded:
        embedded.run(duration=600)
    expected = keys(embedded.store.list_alerts(open_only=False))

    run = uuid.uuid4().hex[:6]
    prefix, group = f"cwtest-plaza-{run}", f"alerting-plaza-{run}"
    data = offline_demo() | {
        "bus": {"type": "kafka", "bootstrap_servers": [bootstrap]},
        "store": {"type": "redis", "url": store_url, "key_prefix": prefix},
    }
    config = write_yaml(tmp_path / "plaza.yaml", data)
    with KafkaBus({"bootstrap_servers": bootstrap, "client_id": "crowdwatch-test"}) as bus:
        bus.ensure_topics([CROWD_EVENTS, CAMERA_STATUS])
    commit_group_at_end(bootstrap, group, [CROWD_EVENTS, CAMERA_STATUS])  # only this run's events
    store = RedisAlertStore.from_config(RedisStoreConfig(url=store_url, key_prefix=prefix))
    logs = [tmp_path / "alerting.log", tmp_path / "worker.log"]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            spawn(cli("alerting", "-c", str(config), "--group", group, "--duration", "900"), logs[0])
        )
        worker = spawn(
            cli("worker", "-c", str(config), "--models-dir", str(models_dir), "--duration", "900"), logs[1]
        )
        procs.append(worker)
        assert worker.wait(timeout=600) == 0, tail(logs[1])  # the clip ends: the worker flushes and exits
        wait_for(
            lambda: group_lag(bootstrap, group, CROWD_EVENTS) == 0,
            "alerting to commit every event of the worker",
            120.0,
            alive=procs[:1],
            logs=logs,
        )
        got = keys(store.list_alerts(open_only=False))
    finally:
        kill(procs)
        store.close()
        drop_prefix(prefix)
    print(f"\n{len(expected)} alert(s) in both modes: {expected}")
    assert got == expected

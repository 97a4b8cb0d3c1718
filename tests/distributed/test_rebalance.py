"""Scale-out by Kafka's group assignment (DESIGN 6): two `crowdwatch worker --assign kafka`
processes share six cameras; one is killed (SIGKILL: no goodbye to the group) and the survivor
takes its cameras over once the group coordinator notices (session timeout + rebalance). The
takeover time is measured and written to `takeover.json` in the test's tmp dir."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from bus.conftest import drop_topics, kafka_address
from crowdwatch.runtime.assignment import HEARTBEAT_INTERVAL_MS, SESSION_TIMEOUT_MS

from .support import (
    SOUTH_STREET,
    cli,
    demo_centers,
    free_port,
    ids_one_per_partition,
    kill,
    make_video,
    scrape,
    spawn,
    tail,
    wait_for,
    write_yaml,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

FRAMES = "crowdwatch_frames_analysed_total"
START_DEADLINE_S = 240.0  # two processes loading the model on 2 cores, joining the group
TAKEOVER_DEADLINE_S = 90.0
WINDOW_S = 4.0  # a camera is "being processed" by a worker when its counter rose within this


def worker_config(video: Path, ids: list[str], port: int) -> dict[str, Any]:
    return {
        "cameras": [
            {
                "id": cid,
                "url": str(video),
                "loop": True,
                "realtime": True,
                "sample_every_s": 1.0,
                "location": SOUTH_STREET,
                "zones": [
                    {"id": "all", "polygon": [[0, 0], [160, 0], [160, 120], [0, 120]], "method": "detector"}
                ],
            }
            for cid in ids
        ],
        "detector": {"type": "onnx", "model": "yolov8s-person-onnx", "threads": 1},
        "rules": {"enter_count": 50},
        "centers": demo_centers(),
        "bus": {"type": "kafka", "bootstrap_servers": [kafka_address()]},
        "metrics": {"enabled": True, "host": "127.0.0.1", "port": port},
    }


def active(before: dict[str, float], after: dict[str, float]) -> set[str]:
    return {cam for cam, n in after.items() if n > before.get(cam, 0.0)}


def test_survivor_takes_over_the_cameras_of_a_killed_worker(
    kafka_bootstrap: str, tmp_path: Path, models_dir: Path
) -> None:
    run = uuid.uuid4().hex[:6]
    ids = ids_one_per_partition(f"rb{run}", 6)  # one camera per partition: any split splits them
    topic, group = f"cameras-rb-{run}", f"workers-rb-{run}"
    video = make_video(tmp_path / "loop.mp4")
    ports = [free_port(), free_port()]
    configs = [write_yaml(tmp_path / f"w{i}.yaml", worker_config(video, ids, p)) for i, p in enumerate(ports)]
    logs = [tmp_path / "w0.log", tmp_path / "w1.log"]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        published = subprocess.run(
            cli("cameras", "publish", "-c", str(configs[0]), "--topic", topic),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert published.returncode == 0, published.stderr
        assert "6 camera(s) written" in published.stdout
        for cfg, log in zip(configs, logs, strict=True):
            args = ["--log-level", "INFO", "worker", "-c", str(cfg), "--models-dir", str(models_dir)]
            args += ["--assign", "kafka", "--group", group, "--cameras-topic", topic, "--duration", "900"]
            procs.append(spawn(cli(*args), log))

        def snapshot() -> list[dict[str, float]] | None:
            samples = [scrape(p, FRAMES) for p in ports]
            return None if any(s is None for s in samples) else [s or {} for s in samples]

        def shared_by_both() -> list[set[str]] | None:
            before = snapshot()
            if before is None:
                return None
            time.sleep(WINDOW_S)  # the measuring window, not synchronisation
            after = snapshot()
            if after is None:
                return None
            sets = [active(b, a) for b, a in zip(before, after, strict=True)]
            both = sets[0] and sets[1] and not sets[0] & sets[1] and sets[0] | sets[1] == set(ids)
            return sets if both else None

        sets = wait_for(
            shared_by_both,
            "both workers to process a share of the 6 cameras",
            START_DEADLINE_S,
            every_s=0.0,
            alive=procs,
            logs=logs,
        )
        victim, survivor = 0, 1
        moved = sets[victim]
        at_kill = scrape(ports[survivor], FRAMES) or {}
        procs[victim].kill()
        killed_at = time.monotonic()
        procs[victim].wait(timeout=30)

        def taken_over() -> float | None:
            now = scrape(ports[survivor], FRAMES) or {}
            done = all(now.get(cam, 0.0) > at_kill.get(cam, 0.0) for cam in moved)
            return time.monotonic() - killed_at if done else None

        takeover_s = wait_for(
            taken_over,
            "the survivor to process the killed worker's cameras",
            TAKEOVER_DEADLINE_S,
            every_s=0.2,
            alive=[procs[survivor]],
            logs=logs,
        )
        # Every camera keeps going on the survivor.
        first = scrape(ports[survivor], FRAMES) or {}
        wait_for(
            lambda: active(first, scrape(ports[survivor], FRAMES) or {}) == set(ids),
            "all 6 cameras to keep being processed by the survivor",
            60.0,
            alive=[procs[survivor]],
            logs=logs,
        )
        result = {
            "takeover_s": round(takeover_s, 2),
            "moved_cameras": sorted(moved),
            "session_timeout_ms": SESSION_TIMEOUT_MS,
            "heartbeat_interval_ms": HEARTBEAT_INTERVAL_MS,
            "sample_every_s": 1.0,
            "note": "SIGKILL -> first frame of every moved camera analysed on the survivor",
        }
        (tmp_path / "takeover.json").write_text(json.dumps(result, indent=2))
        print(
            f"\ntakeover after SIGKILL: {takeover_s:.1f} s ({len(moved)} cameras moved); "
            f"{tmp_path / 'takeover.json'}"
        )
        assert "secret" not in tail(logs[survivor], 10**7)
    finally:
        kill(procs)
        drop_topics([topic])

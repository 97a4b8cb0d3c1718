"""KafkaCameraAssignment on the real broker with a recording fleet (no model, no video): the
group's partition assignment splits the cameras, follows the topic live, and moves the cameras
of a member that leaves."""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry

from bus.conftest import drop_topics, kafka_address
from crowdwatch.config.backends import KafkaBusConfig
from crowdwatch.config.camera import CameraConfig
from crowdwatch.config.root import AppConfig, parse_config
from crowdwatch.runtime.assignment import KafkaCameraAssignment, publish_cameras, read_topic

from .support import SOUTH_STREET, cli, demo_centers, ids_one_per_partition, wait_for, write_yaml

pytestmark = pytest.mark.kafka

DEADLINE_S = 60.0


class RecordingFleet:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current: dict[str, CameraConfig] = {}
        self.calls = 0

    def set_cameras(self, cameras: Iterable[CameraConfig]) -> None:
        with self._lock:
            self.current = {c.id: c for c in cameras}
            self.calls += 1

    def ids(self) -> set[str]:
        with self._lock:
            return set(self.current)


def camera(camera_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "id": camera_id,
        "url": "rtsp://user:secret@10.1.1.1/live",
        "location": SOUTH_STREET,
        "zones": [{"id": "z", "polygon": [[0, 0], [100, 0], [100, 100]], "method": "detector"}],
    } | changes


def app_config(cameras: list[dict[str, Any]]) -> AppConfig:
    return parse_config(
        {
            "cameras": cameras,
            "centers": demo_centers(),
            "bus": {"type": "kafka", "bootstrap_servers": [kafka_address()]},
        }
    )


@pytest.fixture
def topic() -> Iterator[str]:
    kafka_address()  # skips (or fails in CI) before anything is made
    name = f"cameras-test-{uuid.uuid4().hex[:8]}"
    yield name
    drop_topics([name])


def test_group_splits_follows_and_moves_cameras(topic: str) -> None:
    ids = ids_one_per_partition(f"c{uuid.uuid4().hex[:6]}", 6)
    config = app_config([camera(i) for i in ids])
    assert publish_cameras(config, topic=topic).written == tuple(ids)
    group = f"workers-{uuid.uuid4().hex[:8]}"
    fleets = [RecordingFleet(), RecordingFleet()]
    registries = [CollectorRegistry(), CollectorRegistry()]
    members = [
        KafkaCameraAssignment(config, f, registry=r, topic=topic, group=group)
        for f, r in zip(fleets, registries, strict=True)
    ]
    a, b = fleets

    def split() -> tuple[set[str], set[str]] | None:
        sa, sb = a.ids(), b.ids()
        return (sa, sb) if sa and sb and not sa & sb and sa | sb == set(ids) else None

    try:
        members[0].start()
        wait_for(lambda: a.ids() == set(ids), "the only member to run every camera", DEADLINE_S)
        assert registries[0].get_sample_value("crowdwatch_assigned_cameras") == 6
        members[1].start()
        first, second = wait_for(split, "the two members to split the cameras", DEADLINE_S)
        assert registries[0].get_sample_value("crowdwatch_assigned_cameras") == len(first)
        assert registries[1].get_sample_value("crowdwatch_assigned_cameras") == len(second)

        # Live changes: one camera changed, one removed, one added.
        changed, removed = ids[0], ids[1]
        added = f"{ids[0]}-new"
        cams = [camera(changed, name="renamed")] + [camera(i) for i in ids[2:]] + [camera(added)]
        result = publish_cameras(app_config(cams), topic=topic)
        assert set(result.written) == {changed, added}
        assert result.removed == (removed,)
        wanted = set(ids[2:]) | {changed, added}

        def applied() -> bool:
            current = a.current | b.current
            return a.ids() | b.ids() == wanted and current[changed].name == "renamed"

        wait_for(applied, "the change, removal and addition to reach the members", DEADLINE_S)

        # A record that is not a camera: skipped and counted, the others keep running.
        bad = ids[2]
        producer = KafkaProducer(bootstrap_servers=kafka_address())
        producer.send(topic, key=bad.encode(), value=b'{"id": "' + bad.encode() + b'", "url": 5}')
        producer.flush()
        producer.close()
        wait_for(lambda: a.ids() | b.ids() == wanted - {bad}, "the bad record to be skipped", DEADLINE_S)
        invalid = sum(r.get_sample_value("crowdwatch_camera_records_invalid_total") or 0 for r in registries)
        assert invalid == 1

        # A member that leaves: the other one takes its cameras over.
        members[1].stop()
        wait_for(lambda: a.ids() == wanted - {bad}, "the remaining member to take every camera", DEADLINE_S)
    finally:
        for m in members:
            m.stop()


def test_cli_publish_writes_changes_only_and_tombstones_removed_cameras(topic: str, tmp_path: Path) -> None:
    servers = [kafka_address()]
    base = {"centers": demo_centers(), "bus": {"type": "kafka", "bootstrap_servers": servers}}
    path = write_yaml(tmp_path / "c.yaml", base | {"cameras": [camera("p1"), camera("p2")]})

    def publish() -> str:
        proc = subprocess.run(
            cli("cameras", "publish", "-c", str(path), "--topic", topic),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert "secret" not in proc.stdout + proc.stderr
        return proc.stdout.strip()

    assert publish() == f"{topic}: 2 camera(s) written, 0 unchanged, 0 removed"
    assert publish() == f"{topic}: 0 camera(s) written, 2 unchanged, 0 removed"
    write_yaml(path, base | {"cameras": [camera("p2", name="two")]})
    assert publish() == f"{topic}: 1 camera(s) written, 0 unchanged, 1 removed"
    bus = app_config([camera("x")]).bus
    assert isinstance(bus, KafkaBusConfig)
    stored = read_topic(bus, topic)
    assert set(stored) == {"p2"}
    assert CameraConfig.model_validate_json(stored["p2"]).name == "two"

"""The assigned partitions' cameras as the assignment reads them from the compacted topic:
newest record per key wins, tombstones delete, bad records are skipped and logged without
credentials. No Kafka needed."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from crowdwatch.config.camera import CameraConfig
from crowdwatch.config.root import AppConfig, parse_config
from crowdwatch.runtime.assignment import CameraTable

from .support import SOUTH_STREET, demo_centers

SECRET_URL = "rtsp://admin:hunter2@10.0.0.5:554/stream1"


def camera(camera_id: str, url: str = "a.mp4", **changes: Any) -> dict[str, Any]:
    return {
        "id": camera_id,
        "url": url,
        "location": SOUTH_STREET,
        "zones": [{"id": "z", "polygon": [[0, 0], [100, 0], [100, 100]], "method": "detector"}],
    } | changes


def app_config() -> AppConfig:
    return parse_config({"cameras": [camera("cfg")], "centers": demo_centers()})


def record(data: dict[str, Any]) -> bytes:
    return CameraConfig.model_validate(data).model_dump_json().encode()


def table(partitions: tuple[int, ...] = (0, 1)) -> tuple[CameraTable, list[int]]:
    invalid: list[int] = []
    t = CameraTable(app_config(), on_invalid=lambda: invalid.append(1))
    t.reset(partitions)
    return t, invalid


def test_newest_record_per_key_wins_and_tombstones_delete() -> None:
    t, invalid = table()
    t.put(0, 0, b"a", record(camera("a", name="old")))
    t.put(1, 0, b"b", record(camera("b")))
    t.put(0, 1, b"a", record(camera("a", name="new")))
    assert {cid: c.name for cid, c in t.cameras().items()} == {"a": "new", "b": ""}
    t.put(1, 1, b"b", None)
    assert list(t.cameras()) == ["a"]
    t.put(1, 2, b"gone", None)  # a tombstone for a camera never seen is fine
    assert invalid == []


def test_records_of_partitions_not_assigned_are_ignored() -> None:
    t, _ = table((0,))
    t.put(3, 0, b"x", record(camera("x")))
    assert t.cameras() == {}
    t.put(0, 0, b"y", record(camera("y")))
    t.reset((3,))
    assert t.cameras() == {}
    assert t.partitions == frozenset({3})


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        (b"cam-bad", b"{not json", "Invalid JSON"),
        (b"cam-bad", json.dumps(camera("cam-bad", SECRET_URL, zones=[])).encode(), "zones"),
        (b"cam-bad", json.dumps(camera("cam-bad", SECRET_URL, bogus=1)).encode(), "bogus"),
        (b"cam-bad", record(camera("other", SECRET_URL)), "record key is 'cam-bad'"),
        (None, record(camera("cam-bad", SECRET_URL)), "has no key"),
    ],
)
def test_a_bad_record_is_logged_with_its_camera_id_and_skipped(
    key: bytes | None, value: bytes, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    t, invalid = table()
    t.put(0, 0, b"good", record(camera("good")))
    if key is not None:
        t.put(0, 1, key, record(camera(key.decode())))  # an earlier valid definition
    with caplog.at_level(logging.ERROR, logger="crowdwatch.runtime.assignment"):
        t.put(0, 7, key, value)
    # The newest definition is the truth; it cannot be run, so the camera is not run at all.
    assert list(t.cameras()) == ["good"]
    assert invalid == [1]
    (message,) = [r.getMessage() for r in caplog.records]
    assert why in message
    assert "offset 7" in message
    if key is not None:
        assert message.startswith(f"camera {key.decode()}:")
    assert "hunter2" not in caplog.text
    assert "admin" not in caplog.text


def test_camera_with_credentials_round_trips_exactly() -> None:
    t, _ = table()
    original = CameraConfig.model_validate(camera("cam-rtsp", SECRET_URL, sample_every_s=2.5))
    t.put(1, 0, b"cam-rtsp", original.model_dump_json().encode())
    assert t.cameras() == {"cam-rtsp": original}

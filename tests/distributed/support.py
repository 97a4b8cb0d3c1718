"""Helpers for the distributed tests: configs, test videos, child processes, metrics scraping,
Kafka group offsets. The services come from `scripts/services` ($CROWDWATCH_KAFKA / _REDIS)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
import yaml
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2
from kafka.structs import OffsetAndMetadata
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")

# Inside the demo's south-street boundary (see configs/demo.yaml).
SOUTH_STREET = {"lat": 30.015, "lon": 120.02}


def demo_centers() -> list[dict[str, Any]]:
    data = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    centers = data["centers"]
    assert isinstance(centers, list)
    return centers


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def partition_of(key: str, partitions: int) -> int:
    """The partition kafka-python's default partitioner gives `key` (murmur2, like Java's)."""
    return int(murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


def ids_one_per_partition(prefix: str, partitions: int) -> list[str]:
    """`partitions` camera ids that land on distinct partitions, so that any split of the
    partitions between workers also splits the cameras."""
    chosen: dict[int, str] = {}
    n = 0
    while len(chosen) < partitions:
        candidate = f"{prefix}-{n}"
        chosen.setdefault(partition_of(candidate, partitions), candidate)
        n += 1
    return [chosen[p] for p in range(partitions)]


def make_video(path: Path, frames: int = 40, size: tuple[int, int] = (160, 120), fps: float = 10.0) -> Path:
    """A small mp4v clip: a few moving blocks on grey (the detector sees nobody; it only needs
    frames)."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened(), f"cannot write {path}"
    try:
        for i in range(frames):
            image = np.full((h, w, 3), 128, np.uint8)
            x = (i * 4) % (w - 20)
            cv2.rectangle(image, (x, 30), (x + 20, 90), (40, 40, 200), -1)
            writer.write(image)
    finally:
        writer.release()
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "crowdwatch.cli", *args]


def spawn(args: Sequence[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A child process with its output in `log` (a file, so a chatty child never blocks)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            list(args), stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, **(env or {})}
        )


def kill(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def wait_for(
    probe: Callable[[], T | None],
    what: str,
    deadline_s: float,
    *,
    every_s: float = 0.5,
    alive: Sequence[subprocess.Popen[bytes]] = (),
    logs: Sequence[Path] = (),
) -> T:
    """Poll `probe` until it returns something other than None (or False); fail after the
    deadline or when a process in `alive` exits."""
    end = time.monotonic() + deadline_s
    while True:
        result = probe()
        if result is not None and result is not False:
            return result
        for proc in alive:
            if proc.poll() is not None:
                details = "\n".join(f"--- {p.name}:\n{tail(p)}" for p in logs)
                raise AssertionError(
                    f"{proc.args!r} exited with {proc.returncode} while waiting for {what}\n{details}"
                )
        if time.monotonic() > end:
            details = "\n".join(f"--- {p.name}:\n{tail(p)}" for p in logs)
            raise AssertionError(f"still waiting after {deadline_s:g} s for {what}\n{details}")
        time.sleep(every_s)  # polling other processes; there is nothing to wait on instead


def scrape(port: int, metric: str) -> dict[str, float] | None:
    """`metric`'s samples by their `camera` label from a worker's /metrics; None when the
    endpoint does not answer (yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode("utf-8")
    except OSError:
        return None
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == metric:
                out[sample.labels.get("camera", "")] = sample.value
    return out


def commit_group_at_end(bootstrap: str, group: str, topics: Iterable[str]) -> None:
    """Give consumer group `group` committed offsets at the current end of `topics`, so that
    it starts there instead of reading what other tests left on the shared topics."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = consumer.end_offsets(tps)
        consumer.commit({tp: OffsetAndMetadata(ends[tp], "", -1) for tp in tps})
    finally:
        consumer.close(autocommit=False)


def group_lag(bootstrap: str, group: str, topic: str) -> int:
    """Messages of `topic` that `group` has not committed yet."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = consumer.end_offsets(tps)
        return sum(ends[tp] - (consumer.committed(tp) or 0) for tp in tps)
    finally:
        consumer.close(autocommit=False)

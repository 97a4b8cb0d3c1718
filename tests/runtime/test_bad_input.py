"""Bad input in a running system: a dead camera is reported and retried while the others keep
working; a missing model stops start-up with the command that fetches it."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from crowdwatch.cli import tolerate_encoding
from crowdwatch.config.camera import CameraConfig
from crowdwatch.config.root import parse_config
from crowdwatch.ingest.base import Source, StatusCallback
from crowdwatch.ingest.opencv import OpenCVSource
from crowdwatch.runtime.embedded import EmbeddedApp

from .fakes import CountingDetector, ScriptedSource
from .test_embedded import COUNTS, SQUARE, config


def two_cameras(missing: Path) -> dict[str, Any]:
    data = config()
    data["cameras"].append(
        {
            "id": "cam-dead",
            "url": str(missing),
            "location": {"lat": 30.015, "lon": 120.02},
            "zones": [{"id": "z", "polygon": SQUARE, "method": "detector"}],
            "reconnect": {"initial_s": 0.05, "max_s": 0.1},
        }
    )
    return data


def test_dead_camera_goes_offline_with_reason_and_others_keep_running(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-camera.mp4"
    real: list[OpenCVSource] = []

    def factory(cam: CameraConfig, on_status: StatusCallback) -> Source:
        if cam.id == "cam-a":
            return ScriptedSource("cam-a", len(COUNTS))
        real.append(OpenCVSource(cam, on_status))
        return real[-1]

    app = EmbeddedApp(
        parse_config(two_cameras(missing)),
        events_out=tmp_path / "events.jsonl",
        detector=CountingDetector(COUNTS),
        source_factory=factory,
    )
    with app:
        # The healthy camera's file ends; the dead one never does, so wait for a deadline
        # on what we need to see rather than for every source to end.
        app.run(
            duration=30,
            stop=_stop_when(lambda: real[0].stats().reconnects >= 2 and bool(app.store.list_alerts())),
        )

    statuses = {s.camera_id: s for s in app.store.camera_statuses()}
    assert statuses["cam-dead"].type.value == "camera.offline"
    assert "no such file" in statuses["cam-dead"].reason
    assert real[0].stats().reconnects >= 2
    dead_view = next(c for c in app.live.cameras() if c.camera_id == "cam-dead")
    assert dead_view.status == "offline"
    (alert,) = app.store.list_alerts(open_only=False)
    assert alert.camera_id == "cam-a"

    records = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    offline = [r for r in records if r["record"] == "event" and r["event"]["type"] == "camera.offline"]
    assert offline
    assert offline[0]["topic"] == "camera-status"


def _stop_when(condition: Callable[[], bool]) -> threading.Event:
    """An Event-like object that reports set once `condition()` holds (polled by app.run)."""

    class _Until(threading.Event):
        def is_set(self) -> bool:
            return condition() or super().is_set()

    return _Until()


def run_cli(
    tmp_path: Path, data: dict[str, Any], command: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """`crowdwatch COMMAND -c <data as a config file> ARGS` in a child process."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(data))
    return subprocess.run(
        [sys.executable, "-m", "crowdwatch.cli", command, "-c", str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@contextmanager
def taken_port() -> Iterator[int]:
    """A 127.0.0.1 port something is listening on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_missing_model_stops_start_up_with_the_fetch_command(tmp_path: Path) -> None:
    data = config()
    data["detector"] = {"type": "onnx", "model": "yolov8s-person-onnx"}
    empty = tmp_path / "models"
    empty.mkdir()
    proc = run_cli(tmp_path, data, "run", "--no-ui", "--models-dir", str(empty))
    assert proc.returncode == 1
    assert "crowdwatch models fetch yolov8s-person-onnx" in proc.stderr


def test_config_error_stops_start_up_naming_the_field(tmp_path: Path) -> None:
    data = config()
    data["rules"]["exit_count"] = 9
    proc = run_cli(tmp_path, data, "run", "--no-ui")
    assert proc.returncode == 1
    assert "rules: exit_count (9.0) must be below enter_count (5.0)" in proc.stderr


@pytest.mark.parametrize(
    ("setup", "command", "message"),
    [
        (
            "port-taken",
            ["run", "--no-ui", "--duration", "1"],
            "cannot serve metrics on 127.0.0.1:{port}",
        ),
        ("events-out-is-a-folder", ["run", "--no-ui", "--events-out", "{tmp}"], "is a directory"),
        ("assign-without-kafka", ["worker", "--assign", "kafka"], "--assign kafka needs `bus: {type: kafka"),
        ("worker-on-memory-bus", ["worker"], "`crowdwatch worker` is one role of the distributed mode"),
        ("alerting-on-memory-bus", ["alerting"], "`crowdwatch alerting` is one role of the distributed mode"),
    ],
)
def test_start_up_problems_are_one_clear_line(
    tmp_path: Path, setup: str, command: list[str], message: str
) -> None:
    """Each once ended in a traceback, some only after the models had loaded."""
    data = config()
    with taken_port() as port:
        data["metrics"] = {"enabled": setup == "port-taken", "host": "127.0.0.1", "port": port}
        args = [a.format(tmp=tmp_path) for a in command]
        proc = run_cli(tmp_path, data, *args)
    assert proc.returncode == 1
    assert message.replace("{port}", str(port)) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_output_that_is_not_utf8_gets_question_marks_instead_of_a_crash() -> None:
    """The end-of-run table ('p/m²', '·', '↑', '—') crashed on PYTHONIOENCODING=ascii."""
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="ascii")
    tolerate_encoding(out)
    out.write("3.1 p/m² ↑")
    out.flush()
    assert raw.getvalue() == b"3.1 p/m? ?"
    utf8 = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    tolerate_encoding(utf8)
    assert utf8.errors == "strict"  # UTF-8 output is left as it is


def test_an_unknown_model_is_one_clear_line(tmp_path: Path) -> None:
    """A typo in detector.model passed validate-config and ended `run` in a traceback."""
    data = config()
    data["detector"] = {"type": "onnx", "model": "yolov8s-persn-onnx"}
    data["metrics"] = {"enabled": False}
    proc = run_cli(tmp_path, data, "run", "--no-ui")
    assert proc.returncode == 1
    assert "error: " in proc.stderr
    assert "yolov8s-persn-onnx" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_metrics_port_can_be_given_per_process(tmp_path: Path) -> None:
    """Two roles from one config on one host: the second took the same metrics port."""
    data = config()
    with taken_port() as port:
        data["metrics"] = {"enabled": True, "host": "127.0.0.1", "port": port}
        data["detector"] = {"type": "onnx", "model": "yolov8s-persn-onnx"}  # stops right after
        proc = run_cli(tmp_path, data, "run", "--no-ui", "--metrics-port", "0")
    assert "cannot serve metrics" not in proc.stderr  # port 0: any free one, not the taken one
    assert "metrics on http://127.0.0.1:" in proc.stderr

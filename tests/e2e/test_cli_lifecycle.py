"""`crowdwatch run` ends cleanly on Ctrl-C (SIGINT) and on --duration, draining what it has."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .support import REPO, demo_config_dict

pytestmark = pytest.mark.slow


def _looping_demo(tmp_path: Path) -> Path:
    data = demo_config_dict()
    data["cameras"][0]["url"] = str(REPO / "assets" / "vtest_plaza.mp4")
    data["metrics"] = {"enabled": False}
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _wait_for_lines(path: Path, proc: subprocess.Popen[str], deadline_s: float) -> list[str]:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited early with {proc.returncode}"
        if path.exists() and path.read_text().strip():
            return path.read_text().splitlines()
        time.sleep(0.2)  # polling a file written by another process, not synchronisation
    raise AssertionError(f"nothing written to {path} within {deadline_s} s")


def test_sigint_stops_cleanly_and_keeps_every_record(tmp_path: Path, models_dir: Path) -> None:
    events = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crowdwatch.cli",
            "run",
            "-c",
            str(_looping_demo(tmp_path)),
            "--no-ui",
            "--events-out",
            str(events),
            "--models-dir",
            str(models_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_lines(events, proc, deadline_s=300)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "alert(s) raised" in out
    records = [json.loads(line) for line in events.read_text().splitlines()]  # every line whole
    assert any(r["record"] == "alert" for r in records)


def test_duration_ends_the_run(tmp_path: Path, models_dir: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "crowdwatch.cli",
            "run",
            "-c",
            str(_looping_demo(tmp_path)),
            "--no-ui",
            "--duration",
            "5",
            "--models-dir",
            str(models_dir),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Cameras" in proc.stdout

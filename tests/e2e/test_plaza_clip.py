"""The whole pipeline on the bundled plaza clip with the real detector (DESIGN 1, issue 2).

Hand counts: people whose feet are inside the demo's `plaza` zone, counted by eye on the
frames below (see the README's "Measured" section for how)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from crowdwatch.config.detector import OnnxDetectorConfig
from crowdwatch.config.root import parse_config
from crowdwatch.core.zones import make_zone
from crowdwatch.detectors.registry import build_detector

from .support import REPO, demo_config_dict, offline

CLIP = REPO / "assets" / "vtest_plaza.mp4"
HAND_COUNTS = {100: 6, 300: 6, 500: 4, 700: 7}

pytestmark = pytest.mark.slow


def _frames(indices: set[int]) -> dict[int, np.ndarray]:
    cap = cv2.VideoCapture(str(CLIP))
    out: dict[int, np.ndarray] = {}
    i = 0
    while len(out) < len(indices):
        ok, image = cap.read()
        assert ok, f"clip ended at frame {i} before frames {sorted(indices - set(out))}"
        if i in indices:
            out[i] = image
        i += 1
    cap.release()
    return out


def test_counts_on_hand_counted_frames_within_two(models_dir: Path) -> None:
    cfg = parse_config(demo_config_dict())
    zone_cfg = next(z for z in cfg.cameras[0].zones if z.id == "plaza")
    zone = make_zone(zone_cfg.id, zone_cfg.polygon)
    assert isinstance(cfg.detector, OnnxDetectorConfig)
    detector = build_detector(cfg.detector, models_dir)
    try:
        counted = {i: zone.count(detector.detect(img)) for i, img in _frames(set(HAND_COUNTS)).items()}
    finally:
        detector.close()
    errors = {i: counted[i] - HAND_COUNTS[i] for i in HAND_COUNTS}
    assert all(abs(e) <= 2 for e in errors.values()), f"counted {counted}, hand {HAND_COUNTS}"


def test_cli_run_raises_routed_alert_for_plaza(models_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "plaza.yaml"
    config.write_text(yaml.safe_dump(offline(demo_config_dict(), CLIP)))
    events_out = tmp_path / "events.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "crowdwatch.cli",
            "run",
            "-c",
            str(config),
            "--no-ui",
            "--events-out",
            str(events_out),
            "--models-dir",
            str(models_dir),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in events_out.read_text().splitlines()]

    started = [
        r["event"]
        for r in records
        if r["record"] == "event" and r["event"]["type"] == "crowd.gathering.started"
    ]
    assert started, "no gathering started on the plaza clip"
    assert {e["data"]["zone_id"] for e in started} >= {"plaza"}
    for e in started:
        assert e["data"]["count"] >= 6 if e["data"]["zone_id"] == "plaza" else True
        assert e["data"]["model"] == "yolov8s-person-onnx"

    alerts = {r["alert"]["id"]: r["alert"] for r in records if r["record"] == "alert"}
    plaza = [a for a in alerts.values() if a["zone_id"] == "plaza"]
    assert plaza, "no alert for the plaza zone"
    for a in plaza:
        # The camera stands inside South Street's boundary and has no override.
        assert a["center_id"] == "south-street"
        assert a["route_reason"] == "inside:street"
    # One alert per episode: every started event has exactly one alert with its episode key.
    episode_keys = {e["id"].rsplit(":", 1)[0] for e in started}
    assert episode_keys == set(alerts)

"""A real crowd forming (Mall dataset, frames 280-440 at 2 fps, exact count per frame): the
pipeline's gathering must start close to where the true count makes one, and never before.

The expected start comes from running the same gathering rules over the true counts. The
pipeline counts with the product default (`auto`: boxes while sparse, density in crowds) and
a per-camera density calibration fitted on Mall frames OUTSIDE this clip (see README)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from crowdwatch.config.root import parse_config
from crowdwatch.core.crowd import GatheringTracker, ZoneIdentity
from crowdwatch.core.types import EventType, Frame, GeoPoint, ZoneCount
from crowdwatch.ingest.base import Source, StatusCallback
from crowdwatch.ingest.opencv import OpenCVSource
from crowdwatch.runtime.build import gathering_rules
from crowdwatch.runtime.embedded import EmbeddedApp

from .support import REPO

pytestmark = pytest.mark.slow

FPS = 2.0
RULES: dict[str, Any] = {
    "enter_count": 35,  # a mall whose usual crowd is ~30 (the dataset's median is 29)
    "exit_count": 25,
    "enter_density": None,
    "min_duration_s": 5,
    "clear_after_s": 10,
    "update_every_s": 30,
    "cooldown_s": 60,
    "smoothing": {"method": "median", "window": 3},
}
TOLERANCE_FRAMES = 4  # 2 s: smoothing delay plus counting noise


def roi_polygon(mask_path: Path) -> list[list[int]]:
    mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
    assert mask is not None
    contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    outline = cv2.approxPolyDP(max(contours, key=cv2.contourArea), 2.0, True).reshape(-1, 2)
    return [[int(x), int(y)] for x, y in outline]


def config(clip: Path, polygon: list[list[int]], calibration: dict[str, float]) -> dict[str, Any]:
    box = [[120.00, 30.00], [120.01, 30.00], [120.01, 30.01], [120.00, 30.01], [120.00, 30.00]]
    return {
        "cameras": [
            {
                "id": "mall",
                "url": str(clip),
                "realtime": False,
                "sample_every_s": 1 / FPS,
                "location": {"lat": 30.005, "lon": 120.005},
                "density_calibration": calibration,
                "zones": [{"id": "concourse", "polygon": polygon}],
            }
        ],
        "rules": RULES,
        "centers": [
            {
                "id": "d",
                "name": "District",
                "level": "district",
                "boundary": {"type": "Polygon", "coordinates": [box]},
            },
        ],
        "metrics": {"enabled": False},
    }


def true_start_frame(counts: list[int]) -> int:
    """Where the gathering rules, fed the exact counts, start an episode."""
    rules = gathering_rules(parse_config(config(Path("x.mp4"), [[0, 0], [9, 0], [9, 9]], {})).rules)
    tracker = GatheringTracker(ZoneIdentity("mall", "concourse", GeoPoint(0, 0)), rules)
    for i, n in enumerate(counts):
        events = tracker.observe(ZoneCount("mall", "concourse", i / FPS, float(n), None, "detector"), "truth")
        if any(e.type is EventType.GATHERING_STARTED for e in events):
            return i
    raise AssertionError("the true counts never make a gathering: the test premise is broken")


class RecordingSource:
    """Wraps the real source to remember each frame's timestamp (to turn times into frames)."""

    def __init__(self, inner: Source) -> None:
        self._inner = inner
        self.camera_id = inner.camera_id
        self.ts: list[float] = []

    def start(self) -> None:
        self._inner.start()

    def read(self, timeout: float) -> Frame | None:
        frame = self._inner.read(timeout)
        if frame is not None:
            self.ts.append(frame.ts)
        return frame

    @property
    def ended(self) -> bool:
        return self._inner.ended

    def stats(self):  # type: ignore[no-untyped-def]
        return self._inner.stats()

    def close(self) -> None:
        self._inner.close()


@pytest.mark.xfail(
    strict=True,
    reason="counting is not yet accurate enough on this crowd (issue 3): the calibrated density "
    "count runs ~4 below the truth on frames 280-440 (MAE 4.8 vs 2.6 on the frames it was fitted "
    "on), so the episode starts ~15 frames late. strict: remove this mark when it passes.",
)
def test_gathering_starts_where_the_true_count_makes_one(shared_data: Path, models_dir: Path) -> None:
    mall = shared_data / "mall"
    clip = mall / "derived" / "mall_gathering_f000280-000440_2fps.mp4"
    truth = json.loads((mall / "derived" / "mall_gathering_f000280-000440.json").read_text())["counts"]
    calibration = json.loads((REPO / "configs" / "calibration" / "mall.json").read_text())
    cfg = parse_config(config(clip, roi_polygon(mall / "roi_mask.png"), calibration["linear"]))

    recorders: list[RecordingSource] = []

    def factory(cam: Any, on_status: StatusCallback) -> Source:
        recorders.append(RecordingSource(OpenCVSource(cam, on_status)))
        return recorders[-1]

    app = EmbeddedApp(cfg, models_dir=models_dir, source_factory=factory)
    with app:
        app.run(duration=1800)
    ts = recorders[0].ts
    assert len(ts) == len(truth), f"analysed {len(ts)} frames, clip has {len(truth)}"

    alerts = app.store.list_alerts(open_only=False)
    assert alerts, "no gathering alert on a crowd that grows from 13 to 48"
    first = min(alerts, key=lambda a: a.episode_start)
    start_frame = int(np.argmin(np.abs(np.asarray(ts) - first.episode_start)))

    expected = true_start_frame(truth)
    first_cross = next(i for i, n in enumerate(truth) if n >= RULES["enter_count"])
    earliest_possible = first_cross + int(RULES["min_duration_s"] * FPS)
    assert start_frame >= earliest_possible, (
        f"started at frame {start_frame}, before the true count could make a gathering "
        f"(crossed {RULES['enter_count']} at {first_cross}, +min_duration = {earliest_possible})"
    )
    assert start_frame <= expected + TOLERANCE_FRAMES, (
        f"started at frame {start_frame}, true start {expected} (tolerance {TOLERANCE_FRAMES})"
    )
    assert first.method == "density", "a crowd of 35+ should be counted from the density map"

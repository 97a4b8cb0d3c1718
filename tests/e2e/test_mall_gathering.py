"""A real crowd forming (Mall dataset, frames 280-440 at 2 fps, exact count per frame): the
pipeline's gathering must start close to where the true count makes one, and never before.

The expected start comes from running the same gathering rules over the true counts. The
pipeline counts with the product default (`auto`: boxes while sparse, density in crowds); its
density model is `csrnet-mall`, CSRNet fine-tuned on this camera's frames OUTSIDE the clip
(`crowdwatch models train csrnet-mall`; see README)."""

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
from crowdwatch.detectors.trained import read_info
from crowdwatch.ingest.base import Source, StatusCallback
from crowdwatch.ingest.opencv import OpenCVSource
from crowdwatch.runtime.build import gathering_rules
from crowdwatch.runtime.embedded import EmbeddedApp

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
CLIP_FRAMES = (280, 440)  # the dataset frames the clip holds


def roi_polygon(mask_path: Path) -> list[list[int]]:
    mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
    assert mask is not None
    contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    outline = cv2.approxPolyDP(max(contours, key=cv2.contourArea), 2.0, True).reshape(-1, 2)
    return [[int(x), int(y)] for x, y in outline]


def config(clip: Path, polygon: list[list[int]], density_model: str) -> dict[str, Any]:
    box = [[120.00, 30.00], [120.01, 30.00], [120.01, 30.01], [120.00, 30.01], [120.00, 30.00]]
    return {
        "cameras": [
            {
                "id": "mall",
                "url": str(clip),
                "realtime": False,
                "sample_every_s": 1 / FPS,
                "location": {"lat": 30.005, "lon": 120.005},
                "zones": [{"id": "concourse", "polygon": polygon}],
            }
        ],
        "rules": RULES,
        "counting": {"density": {"model": density_model}},
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
    rules = gathering_rules(
        parse_config(config(Path("x.mp4"), [[0, 0], [9, 0], [9, 9]], "csrnet-density")).rules
    )
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


def test_the_density_model_never_saw_the_clip(models_dir: Path, mall_density_model: str) -> None:
    info = read_info(mall_density_model, models_dir)
    assert info is not None
    frames = {int(name.removeprefix("seq_")) for name in info["data"]["trained_on"]}
    assert frames, "trained on no frames"
    assert not frames & set(range(CLIP_FRAMES[0], CLIP_FRAMES[1] + 1))


@pytest.mark.xfail(
    strict=True,
    reason="counting is not yet accurate enough on this crowd (issue 3): csrnet-mall (CV MAE 2.46 "
    "on its own training frames) still counts ~3 below the truth on frames 280-440 (MAE 3.54, "
    "bias -3.17), ~8 below on clip frames 100-113 where the crowd first reaches 39-47, so the "
    "episode starts at frame 123 where the truth makes one at 109. strict: remove this mark when "
    "it passes.",
)
def test_gathering_starts_where_the_true_count_makes_one(
    shared_data: Path, models_dir: Path, mall_density_model: str
) -> None:
    mall = shared_data / "mall"
    clip = mall / "derived" / "mall_gathering_f000280-000440_2fps.mp4"
    truth = json.loads((mall / "derived" / "mall_gathering_f000280-000440.json").read_text())["counts"]
    cfg = parse_config(config(clip, roi_polygon(mall / "roi_mask.png"), mall_density_model))

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

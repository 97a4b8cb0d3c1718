"""A camera worker times the gathering rules on the frames' monotonic clock (Frame.mono) and
stamps events with their wall clock (Frame.ts): a step of the wall clock (an NTP correction)
neither holds a gathering back nor lets one start early."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from crowdwatch.config.camera import CameraConfig
from crowdwatch.config.counting import CountingConfig
from crowdwatch.config.rules import RulesConfig
from crowdwatch.core.types import CrowdEvent, Detections, EventType, Frame
from crowdwatch.runtime.build import camera_analysis
from crowdwatch.runtime.worker import CameraWorker

WALL0 = 1_800_000_000.0


class BoxesFromPixel:
    """A detector that sees as many people as the first pixel's value says."""

    detector_name = "fake"
    density_name = ""

    def detect(self, image: npt.NDArray[np.uint8]) -> Detections:
        n = int(image[0, 0, 0])
        xyxy = np.array([[90 + j, 60, 110 + j, 150] for j in range(n)], np.float32).reshape(-1, 4)
        return Detections(xyxy, np.full(n, 0.9, np.float32), np.zeros(n, np.int32))


class NoSource:
    camera_id = "cam"


def worker(events: list[CrowdEvent]) -> CameraWorker:
    camera = CameraConfig.model_validate(
        {
            "id": "cam",
            "url": "rtsp://127.0.0.1/s",
            "location": {"lat": 1, "lon": 1},
            "zones": [{"id": "z", "polygon": [(0, 0), (400, 0), (400, 200), (0, 200)], "method": "detector"}],
        }
    )
    rules = RulesConfig(
        enter_count=3, min_duration_s=5, clear_after_s=5, cooldown_s=10, smoothing={"method": "none"}
    )
    analysis = camera_analysis(camera, rules, CountingConfig())
    return CameraWorker(NoSource(), BoxesFromPixel(), analysis, events.append)  # type: ignore[arg-type]


@pytest.mark.parametrize("step_s", [-3600.0, 3600.0, 0.0], ids=["back", "forward", "none"])
def test_a_wall_clock_step_does_not_move_the_start(step_s: float) -> None:
    events: list[CrowdEvent] = []
    w = worker(events)
    for i in range(10):  # 5 people, a frame a second; the wall clock steps at the third frame
        wall = WALL0 + i + (step_s if i >= 2 else 0.0)
        w.process(Frame("cam", i, wall, 1000.0 + i, np.full((200, 400, 3), 5, np.uint8)))
    (started,) = [e for e in events if e.type is EventType.GATHERING_STARTED]
    assert started.ts == WALL0 + 5 + step_s  # after min_duration_s of monotonic time, wall-stamped

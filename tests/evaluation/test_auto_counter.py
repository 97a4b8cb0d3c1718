"""The benchmark's `auto` counter decides as an `auto` zone does, probe included."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from crowdwatch.core.auto_mode import AutoParams
from crowdwatch.core.density import DensityMap
from crowdwatch.core.types import Detections
from crowdwatch.evaluation.counting import auto_counter

Image = npt.NDArray[np.uint8]


class Boxes:
    """A detector that finds `n` people whatever the picture."""

    name = "boxes"

    def __init__(self, n: int) -> None:
        self.n = n

    def detect(self, image: Image) -> Detections:
        xyxy = np.array([[10 * i, 10, 10 * i + 8, 90] for i in range(self.n)], np.float32).reshape(-1, 4)
        return Detections(xyxy, np.full(self.n, 0.9, np.float32), np.zeros(self.n, np.int32))

    def close(self) -> None:
        pass


class Uniform:
    """A density model whose map sums to `total`; counts its calls."""

    name = "uniform"

    def __init__(self, total: float) -> None:
        self.total = total
        self.calls = 0

    def estimate(self, image: Image) -> DensityMap:
        self.calls += 1
        cells = np.full((10, 10), self.total / 100, np.float32)
        return DensityMap(cells, (8.0, 8.0), (80, 80))

    def close(self) -> None:
        pass


PICTURE = np.zeros((80, 80, 3), np.uint8)


@pytest.mark.parametrize(
    ("boxes", "density", "expected", "mode"),
    [
        (9, 287.0, 287.0, "density"),  # a crowd the detector barely sees: the probe catches it
        (9, 12.0, 9.0, "detector"),  # the map agrees with the boxes: boxes are exact
        (20, 60.0, 60.0, "density"),  # enough boxes for the box rule alone
    ],
)
def test_each_picture_alone_is_probed(boxes: int, density: float, expected: float, mode: str) -> None:
    counter = auto_counter(Boxes(boxes), Uniform(density), AutoParams())
    assert counter(PICTURE, None) == pytest.approx(expected)
    assert counter.modes == [mode]


def test_without_probing_a_crowd_with_few_boxes_stays_on_boxes() -> None:
    estimator = Uniform(287.0)
    counter = auto_counter(Boxes(9), estimator, AutoParams(probe_every_s=None))
    assert counter(PICTURE, None) == 9.0
    assert estimator.calls == 0  # and the density model never ran


def test_as_frames_the_map_runs_only_at_probes() -> None:
    estimator = Uniform(12.0)  # agrees with the boxes: no switch, only the probes cost a map
    counter = auto_counter(Boxes(9), estimator, AutoParams(probe_every_s=30), fps=1.0)
    counts = [counter(PICTURE, None) for _ in range(61)]
    assert counts == [9.0] * 61
    assert estimator.calls == 3  # frames 0, 30 and 60

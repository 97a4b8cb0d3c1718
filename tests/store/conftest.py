"""Backends for the store contract tests. Adding one (Redis) is one more entry in BACKENDS,
e.g. `pytest.param(redis_store, id="redis", marks=pytest.mark.redis)`; its factory should use a
fresh key prefix per call so that tests do not see each other's alerts."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from crowdwatch.store.base import AlertStore
from crowdwatch.store.memory import MemoryAlertStore


def memory_store() -> AlertStore:
    return MemoryAlertStore()


BACKENDS = [pytest.param(memory_store, id="memory")]


@pytest.fixture(params=BACKENDS)
def store_factory(request: pytest.FixtureRequest) -> Callable[[], AlertStore]:
    factory: Callable[[], AlertStore] = request.param
    return factory


@pytest.fixture
def store(store_factory: Callable[[], AlertStore]) -> AlertStore:
    return store_factory()

"""Backends for the store contract tests. Adding one is one more entry in BACKENDS; a backend
makes a store and registers its cleanup on the ExitStack it is given. Redis stores get a fresh
key prefix per call, so that tests do not see each other's alerts."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
import redis

from crowdwatch.config.backends import RedisStoreConfig
from crowdwatch.store.base import AlertStore
from crowdwatch.store.memory import MemoryAlertStore
from crowdwatch.store.redis import RedisAlertStore

Backend = Callable[[ExitStack], AlertStore]
REDIS_ENV = "CROWDWATCH_REDIS"


def memory_store(cleanup: ExitStack) -> AlertStore:
    return MemoryAlertStore()


def redis_url() -> str:
    """The test Redis from $CROWDWATCH_REDIS; skips without it (fails in CI)."""
    url = os.environ.get(REDIS_ENV)
    if not url:
        why = f"${REDIS_ENV} is not set (e.g. redis://127.0.0.1:16379/0 after `scripts/services start redis`)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {why}")
        pytest.skip(why)
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=2) as client:
            client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"${REDIS_ENV}={url} does not answer: {exc}")
    return url


def redis_config(prefix: str | None = None) -> RedisStoreConfig:
    return RedisStoreConfig(url=redis_url(), key_prefix=prefix or f"cwtest-{uuid.uuid4().hex}")


def drop_prefix(prefix: str) -> None:
    with redis.Redis.from_url(redis_url()) as client:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)


def open_redis_store(cleanup: ExitStack, config: RedisStoreConfig) -> RedisAlertStore:
    """A store on `config`, closed (and its keys deleted) when `cleanup` unwinds."""
    cleanup.callback(drop_prefix, config.key_prefix)  # runs after the close below
    store = RedisAlertStore.from_config(config)
    cleanup.callback(store.close)
    return store


def redis_store(cleanup: ExitStack) -> AlertStore:
    return open_redis_store(cleanup, redis_config())


BACKENDS = [
    pytest.param(memory_store, id="memory"),
    pytest.param(redis_store, id="redis", marks=pytest.mark.redis),
]

# Stores that keep resolved alerts this long (`purge`).
RETENTION_S = 3600.0


def memory_store_with_retention(cleanup: ExitStack) -> AlertStore:
    return MemoryAlertStore(resolved_retention_s=RETENTION_S)


def redis_store_with_retention(cleanup: ExitStack) -> AlertStore:
    config = redis_config().model_copy(update={"resolved_retention_s": RETENTION_S})
    return open_redis_store(cleanup, config)


RETENTION_BACKENDS = [
    pytest.param(memory_store_with_retention, id="memory"),
    pytest.param(redis_store_with_retention, id="redis", marks=pytest.mark.redis),
]


@pytest.fixture(params=BACKENDS)
def store_factory(request: pytest.FixtureRequest) -> Iterator[Callable[[], AlertStore]]:
    """Makes stores on one backend; each is closed and its data dropped after the test."""
    backend: Backend = request.param
    with ExitStack() as cleanup:
        yield lambda: backend(cleanup)


@pytest.fixture
def store(store_factory: Callable[[], AlertStore]) -> AlertStore:
    return store_factory()


@pytest.fixture(params=RETENTION_BACKENDS)
def retention_store(request: pytest.FixtureRequest) -> Iterator[AlertStore]:
    """A store whose `purge` removes alerts resolved RETENTION_S before."""
    backend: Backend = request.param
    with ExitStack() as cleanup:
        yield backend(cleanup)

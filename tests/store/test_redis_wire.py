"""The transaction primitives on a real Redis, packed a batch at a time: reads answer in order,
writes run in order, a refused write raises (Redis does not roll back the others), a watched
key changed by another client makes EXEC write nothing, and the connection stays usable."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.connection import Connection
from redis.exceptions import ResponseError

from crowdwatch.store import redis_wire as wire

from .conftest import redis_config

pytestmark = pytest.mark.redis


@pytest.fixture(params=["hiredis-reader", "read_response"])
def client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """Both ways of reading a transaction's replies: straight off hiredis's reader, and through
    redis-py's read_response (the way for any other parser)."""
    if request.param == "read_response":
        monkeypatch.setattr(wire, "_HiredisParser", None)
    with redis.Redis.from_url(redis_config().url, decode_responses=True) as c:
        yield c


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    name = f"wire-test:{uuid.uuid4().hex}"
    yield name
    for key in client.scan_iter(match=f"{name}:*"):
        client.delete(key)


def test_reads_answer_as_the_commands_would(client: redis.Redis, prefix: str) -> None:
    client.hset(f"{prefix}:h", mapping={"a": "1", "b": "x y"})
    client.set(f"{prefix}:s", "v")
    reads = [
        ("EXISTS", f"{prefix}:s"),
        ("EXISTS", f"{prefix}:missing"),
        ("HGETALL", f"{prefix}:h"),
        ("HGETALL", f"{prefix}:missing"),
    ]
    with wire.connection(client) as conn:
        replies = wire.watch_and_read(conn, [f"{prefix}:h"], reads)
        wire.unwatch(conn)
    assert replies[:2] == [1, 0]
    assert _as_dict(replies[2]) == {"a": "1", "b": "x y"}
    assert _as_dict(replies[3]) == {}


def _as_dict(reply: Any) -> dict[str, str]:
    """A hash reply: a dict (RESP3, or hiredis) or a flat list (RESP2)."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


@pytest.mark.parametrize("count", [0, 1, 2500])
def test_writes_run_in_order(client: redis.Redis, prefix: str, count: int) -> None:
    writes = [("RPUSH", f"{prefix}:list", str(i), "and", "more") for i in range(count)]
    with wire.connection(client) as conn:
        wire.watch_and_read(conn, [f"{prefix}:list"], [])
        assert wire.execute(conn, writes)
    expected = [x for i in range(count) for x in (str(i), "and", "more")]
    assert client.lrange(f"{prefix}:list", 0, -1) == expected


def test_a_refused_write_raises_and_the_others_are_done(client: redis.Redis, prefix: str) -> None:
    client.set(f"{prefix}:string", "not a hash")
    writes = [
        ("SET", f"{prefix}:before", "1"),
        ("HSET", f"{prefix}:string", "f", "v"),  # WRONGTYPE
        ("SET", f"{prefix}:after", "1"),
    ]
    with wire.connection(client) as conn:
        wire.watch_and_read(conn, [f"{prefix}:before"], [])
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            wire.execute(conn, writes)
    # Redis runs every queued command; the caller learns of the refusal and retries the batch.
    assert client.get(f"{prefix}:before") == "1"
    assert client.get(f"{prefix}:after") == "1"


def test_a_write_refused_while_queueing_writes_nothing(client: redis.Redis, prefix: str) -> None:
    writes = [("SET", f"{prefix}:a", "1"), ("SET", f"{prefix}:b"), ("SET", f"{prefix}:c", "1")]
    with wire.connection(client) as conn:
        wire.watch_and_read(conn, [f"{prefix}:a"], [])
        with pytest.raises(ResponseError, match="wrong number of arguments"):
            wire.execute(conn, writes)  # the refusal itself, not EXEC's abort that follows it
        assert wire.watch_and_read(conn, [f"{prefix}:a"], [("EXISTS", f"{prefix}:a")]) == [0]
        wire.unwatch(conn)
    assert client.get(f"{prefix}:c") is None


def test_a_watched_key_changed_by_another_client_writes_nothing(client: redis.Redis, prefix: str) -> None:
    with wire.connection(client) as conn:
        wire.watch_and_read(conn, [f"{prefix}:w"], [("EXISTS", f"{prefix}:w")])
        client.set(f"{prefix}:w", "other writer")
        assert not wire.execute(conn, [("SET", f"{prefix}:mine", "1")])
    assert client.get(f"{prefix}:mine") is None


def test_the_connection_is_usable_after_a_refusal(client: redis.Redis, prefix: str) -> None:
    client.set(f"{prefix}:string", "x")
    with wire.connection(client) as conn:
        wire.watch_and_read(conn, [f"{prefix}:string"], [])
        with pytest.raises(ResponseError):
            wire.execute(conn, [("HSET", f"{prefix}:string", "f", "v")])
        assert wire.watch_and_read(conn, [f"{prefix}:string"], [("EXISTS", f"{prefix}:string")]) == [1]
        wire.unwatch(conn)


def test_the_replies_are_read_off_hiredis_directly(
    client: redis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Guards the fast path against a redis-py change that would quietly send every reply
    through read_response again (as RESP3, redis-py 8's default, once did)."""
    calls: list[int] = []
    real = Connection.read_response

    def counted(self: Connection, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Connection, "read_response", counted)
    writes = [("SET", f"{prefix}:{i}", "1") for i in range(100)]
    with wire.connection(client) as conn:
        direct = wire.reads_directly(conn)
        wire.watch_and_read(conn, [f"{prefix}:0"], [])
        calls.clear()
        assert wire.execute(conn, writes)
    assert len(calls) == (1 if direct else len(writes) + 2)  # with the reader, only EXEC's
    assert direct == (request.node.callspec.params["client"] == "hiredis-reader")

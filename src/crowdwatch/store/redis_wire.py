"""Optimistic transactions over one Redis connection in two round trips: WATCH and every read
in the first, MULTI, every write and EXEC in the second.

redis-py's Pipeline sends each command alone while it watches, and packs arguments in Python;
a batch of a thousand events is thousands of commands, so they go out here packed by hiredis
(redis-py's own packer where hiredis is missing), in packets of SEND_CHUNK commands: Redis parses
and queues one packet while the next is packed, rather than waiting for the whole batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import redis
from redis.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

try:
    import hiredis
except ImportError:  # pragma: no cover - a declared dependency (redis[hiredis])
    hiredis = None  # type: ignore[assignment]
try:  # redis-py's own reader, used where it is (see `_replies`); every other parser works too
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
    from redis._parsers.hiredis import _HiredisParser
except ImportError:  # pragma: no cover - another redis-py layout
    _HiredisParser = None  # type: ignore[assignment,misc]
    _NOT_ENOUGH_DATA = object()

Command = tuple[str, ...]

# Commands per packet (a few tens of kB for a batch's writes). Smaller packets overlap more but
# cost more sends; at 256 the wait for a 1000-event transaction's replies fell by a third.
SEND_CHUNK: Final = 256


@contextmanager
def connection(client: redis.Redis) -> Iterator[Connection]:
    """A connection of the client's pool, held for one transaction (`checkout`, `checkin`)."""
    conn = checkout(client)
    try:
        yield conn
    except BaseException:
        checkin(client, conn, broken=True)
        raise
    checkin(client, conn, broken=False)


def checkout(client: redis.Redis) -> Connection:
    """A connection of the client's pool, for a transaction that spans several calls."""
    conn: Connection = client.connection_pool.get_connection()
    return conn


def checkin(client: redis.Redis, conn: Connection, *, broken: bool) -> None:
    """Back to the pool, clean: `broken` (after an error) closes it first, since replies may be
    left unread or a WATCH in place."""
    if broken:
        conn.disconnect()  # type: ignore[no-untyped-call]
    client.connection_pool.release(conn)


def watch_and_read(
    conn: Connection, watch: Sequence[str], reads: Sequence[Command], *, keep_errors: bool = False
) -> list[Any]:
    """WATCH `watch`, then run `reads`: one round trip; their replies, as the connection
    decodes them (RESP2 hashes come as flat lists). An error reply is raised, or with
    `keep_errors` returned in its place (as a ResponseError)."""
    _send(conn, [("WATCH", *watch), *reads], check_health=True)
    return _read(conn, len(reads) + 1, keep_errors=keep_errors)[1:]  # WATCH's OK first


def query(conn: Connection, commands: Sequence[Command], *, keep_errors: bool = False) -> list[Any]:
    """Run `commands` in one round trip; their replies (errors as in `watch_and_read`)."""
    _send(conn, commands)
    return _read(conn, len(commands), keep_errors=keep_errors)


def unwatch(conn: Connection) -> None:
    _send(conn, [("UNWATCH",)])
    conn.read_response()


def execute(conn: Connection, writes: Sequence[Command]) -> bool:
    """MULTI, `writes`, EXEC: one round trip. False when a watched key changed (nothing was
    written); raises ResponseError when Redis refused a command: while queueing (nothing was
    written) or while executing (the others were: Redis does not roll back)."""
    send_transaction(conn, writes)
    return read_transaction(conn, len(writes))


def send_transaction(conn: Connection, writes: Sequence[Command]) -> None:
    """The first half of `execute`: MULTI, `writes`, EXEC sent, no reply read. Redis runs the
    transaction whether or not the replies are read; `read_transaction` reads them."""
    _send(conn, [("MULTI",), *writes, ("EXEC",)])


def read_transaction(conn: Connection, n_writes: int) -> bool:
    """The second half of `execute`, for a transaction of `n_writes` commands."""
    refused: ResponseError | None = None
    for reply in _replies(conn, n_writes + 1):  # OK, then QUEUED for each write
        if isinstance(reply, ResponseError):
            refused = refused or reply  # read on: every reply must leave the socket
    try:
        replies = conn.read_response()
    except ResponseError:  # EXECABORT, because of `refused`
        if refused is not None:
            raise refused from None
        raise
    if replies is None:
        return False
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply
    return True


def _read(conn: Connection, n: int, *, keep_errors: bool = False) -> list[Any]:
    """The next `n` replies; unless `keep_errors`, the first error reply is raised once all of
    them are read, so the connection is left clean."""
    replies = list(_replies(conn, n))
    if not keep_errors:
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
    return replies


def reads_directly(conn: Connection) -> bool:
    """Whether `conn`'s replies can be read straight off redis-py's hiredis reader (`_replies`)."""
    parser = getattr(conn, "_parser", None)
    return (
        _HiredisParser is not None
        and isinstance(parser, _HiredisParser)
        and getattr(parser, "_reader", None) is not None
    )


def _replies(conn: Connection, n: int) -> Iterator[Any]:
    """The next `n` replies, an error reply (or one that cannot be decoded) as a ResponseError,
    not raised. Read straight
    off redis-py's hiredis reader where the connection has one: its `read_response` costs
    ~1.9 us a reply against ~0.7, and a 1000-event transaction has ~4500 QUEUED replies. As in
    redis-py, a RESP3 push message in between goes to the parser's push handler, and errors
    while reading (socket, protocol) are raised; the caller then drops the connection."""
    if not reads_directly(conn):
        for _ in range(n):
            try:
                yield conn.read_response()
            except ResponseError as exc:
                yield exc
        return
    parser = conn._parser
    gets, read_more = parser._reader.gets, parser.read_from_socket
    push_type = getattr(parser, "_hiredis_PushNotificationType", None)
    left = n
    while left:
        try:
            reply = gets()
            while reply is _NOT_ENOUGH_DATA:
                read_more()
                reply = gets()
        except UnicodeDecodeError as exc:
            # Bytes that are not text where the connection decodes (a record written by
            # something else): hiredis has consumed that reply, so it stands in its place, as
            # an error reply would, and the replies after it are read as usual.
            reply = ResponseError(f"a reply that is not valid text: {exc}")
        if isinstance(reply, RedisConnectionError):
            raise reply
        if push_type is not None and isinstance(reply, push_type):
            parser.handle_push_response(reply)
            continue
        left -= 1
        yield reply


def _send(conn: Connection, commands: Sequence[Command], *, check_health: bool = False) -> None:
    """`check_health` only before WATCH: redis-py's health check may reconnect, which would
    silently drop a WATCH already in place."""
    for start in range(0, len(commands), SEND_CHUNK):
        chunk = commands[start : start + SEND_CHUNK]
        if hiredis is not None:
            packed: list[bytes] = [b"".join(hiredis.pack_command(c) for c in chunk)]  # type: ignore[arg-type]
        else:  # pragma: no cover
            packed = conn.pack_commands(chunk)
        conn.send_packed_command(packed, check_health=check_health and start == 0)  # type: ignore[no-untyped-call]

"""What goes to the dead-letter topic for a message the service cannot use: the message itself,
its headers, and why, where from, in headers of its own. Pure.

A dead letter must always be publishable, or its source offset could never be committed and
the partition would stop behind it. So the error text is written as UTF-8 whatever it holds (a
lone surrogate from the message quoted back), and a dead letter that would not fit in one Kafka
record (the broker's default limit is 1 MiB, and the message may have been just under it before
our headers) is cut down: first the source's own headers go, then the value is truncated. What
was cut is said in headers; the whole message stays in its source topic at `source-offset`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from crowdwatch.bus.base import Message

MAX_ERROR_CHARS: Final = 1000
# Below Kafka's default max.message.bytes / max.request.size (1 MiB), with room for the
# record's own framing.
MAX_DEAD_LETTER_BYTES: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    key: str
    value: bytes
    headers: dict[str, bytes]

    @property
    def size(self) -> int:
        return _size(self.key, self.value, self.headers)


def dead_letter(
    message: Message, error: Exception, reason: str, *, max_bytes: int = MAX_DEAD_LETTER_BYTES
) -> DeadLetter:
    """The dead letter for `message`, which failed with `error` (`reason`: decode or schema),
    at most `max_bytes` of key, value and headers together."""
    ours = {
        "error": str(error)[:MAX_ERROR_CHARS].encode("utf-8", "backslashreplace"),
        "error-reason": reason.encode("utf-8", "backslashreplace"),
        "source-topic": message.topic.encode("utf-8", "backslashreplace"),
        "source-partition": str(message.partition).encode(),
        "source-offset": str(message.offset).encode(),
    }
    key, value = message.key or "", bytes(message.value)
    headers = {**_headers(message.headers), **ours}
    if _size(key, value, headers) <= max_bytes:
        return DeadLetter(key, value, headers)
    # Too big: drop the source's headers (ours say where the original is), then cut the value.
    headers = dict(ours)
    if message.headers:
        headers["dropped-headers"] = str(len(message.headers)).encode()
    room = max_bytes - _size(key, b"", {**headers, "truncated-from": str(len(value)).encode()})
    if len(value) > room:
        headers["truncated-from"] = str(len(value)).encode()
        value = value[: max(room, 0)]
    return DeadLetter(key, value, headers)


def _headers(headers: tuple[tuple[str, bytes], ...]) -> dict[str, bytes]:
    # The bus publishes a mapping: a repeated name keeps its last value.
    return {name: bytes(v) for name, v in headers}


def _size(key: str, value: bytes, headers: dict[str, bytes]) -> int:
    return (
        len(key.encode("utf-8", "backslashreplace"))
        + len(value)
        + sum(len(name.encode("utf-8", "backslashreplace")) + len(v) for name, v in headers.items())
    )

"""A one-slot hand-over between the reader thread and the consumer."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Mailbox(Generic[T]):
    """Holds at most one item. `offer` replaces (latest-frame semantics); `put` waits until
    the slot is free (backpressure). `finish` says nothing more will come; `close` wakes
    everyone for shutdown."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._finished = False
        self._closed = False

    def offer(self, item: T) -> bool:
        """Put `item`, replacing any item not yet taken. True when one was replaced."""
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify_all()
            return replaced

    def put(self, item: T) -> bool:
        """Wait until the slot is free, then put `item`. False when closed first."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is None or self._closed)
            if self._closed:
                return False
            self._item = item
            self._cond.notify_all()
            return True

    def take(self, timeout: float) -> T | None:
        """The item, or None after `timeout` s, or at once when finished-and-empty or closed."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._item is not None or self._finished or self._closed, timeout=max(timeout, 0.0)
            )
            if self._closed:
                return None
            item, self._item = self._item, None
            self._cond.notify_all()
            return item

    def finish(self) -> None:
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._item = None
            self._cond.notify_all()

    @property
    def empty(self) -> bool:
        with self._cond:
            return self._item is None

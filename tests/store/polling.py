"""Waiting for what a background thread does: poll a condition until a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable

DEADLINE_S = 10.0


def wait_until(condition: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"still waiting after {deadline_s:g} s for {what}")
        time.sleep(0.002)

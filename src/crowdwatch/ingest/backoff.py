"""Reconnect waits: exponential growth, capped, with jitter. Pure, so it is tested without sleeping."""

from __future__ import annotations

import math
import random

from crowdwatch.config.camera import ReconnectConfig


def backoff_delay(attempt: int, config: ReconnectConfig, rng: random.Random) -> float:
    """Wait before reconnect attempt `attempt` (0 = first retry).

    The base wait is initial_s * multiplier**attempt, capped at max_s; jitter spreads it
    over base*(1 +/- jitter) but never beyond max_s, so max_s stays the longest wait."""
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    # Compare in log space: multiplier**attempt overflows a float after a few hundred failures.
    growth = attempt * math.log(config.multiplier)
    if config.initial_s >= config.max_s or growth >= math.log(config.max_s / config.initial_s):
        base = config.max_s
    else:
        base = config.initial_s * config.multiplier**attempt  # safe: below max_s here
    low = base * (1.0 - config.jitter)
    high = min(base * (1.0 + config.jitter), config.max_s)
    return rng.uniform(low, high)


class Backoff:
    """Counts failed attempts; reset after a success."""

    def __init__(self, config: ReconnectConfig, rng: random.Random) -> None:
        self._config = config
        self._rng = rng
        self.attempt = 0

    def next_delay(self) -> float:
        delay = backoff_delay(self.attempt, self._config, self._rng)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0

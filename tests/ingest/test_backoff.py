import random

import pytest

from crowdwatch.config.camera import ReconnectConfig
from crowdwatch.ingest.backoff import Backoff, backoff_delay


def _cfg(**kw: float) -> ReconnectConfig:
    return ReconnectConfig(**{"initial_s": 1.0, "max_s": 30.0, "multiplier": 2.0, "jitter": 0.0, **kw})


@pytest.mark.parametrize(
    ("attempt", "config", "expected"),
    [
        (0, _cfg(), 1.0),
        (1, _cfg(), 2.0),
        (4, _cfg(), 16.0),
        (5, _cfg(), 30.0),  # 32 capped
        (10_000, _cfg(), 30.0),  # no float overflow after many failures
        (3, _cfg(multiplier=1.0), 1.0),
        (2, _cfg(initial_s=0.5, multiplier=3.0), 4.5),
        (0, _cfg(initial_s=60.0), 30.0),  # initial above the cap
    ],
)
def test_schedule_without_jitter(attempt: int, config: ReconnectConfig, expected: float) -> None:
    assert backoff_delay(attempt, config, random.Random(0)) == pytest.approx(expected)


@pytest.mark.parametrize(("attempt", "base"), [(0, 1.0), (2, 4.0), (4, 16.0)])
def test_jitter_stays_within_bounds_and_spreads(attempt: int, base: float) -> None:
    rng = random.Random(42)
    delays = [backoff_delay(attempt, _cfg(jitter=0.2), rng) for _ in range(500)]
    assert min(delays) >= base * 0.8
    assert max(delays) <= base * 1.2
    assert max(delays) - min(delays) > base * 0.3  # really jittered, not constant


def test_jitter_never_exceeds_max() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(9, _cfg(jitter=0.5), rng) for _ in range(500)]
    assert max(delays) <= 30.0
    assert min(delays) >= 15.0


def test_seeded_rng_is_reproducible() -> None:
    a = [backoff_delay(i, _cfg(jitter=0.3), random.Random(7)) for i in range(6)]
    b = [backoff_delay(i, _cfg(jitter=0.3), random.Random(7)) for i in range(6)]
    assert a == b


def test_backoff_grows_and_resets() -> None:
    backoff = Backoff(_cfg(), random.Random(0))
    assert [backoff.next_delay() for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    backoff.reset()
    assert backoff.next_delay() == 1.0


def test_negative_attempt_is_an_error() -> None:
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(-1, _cfg(), random.Random(0))

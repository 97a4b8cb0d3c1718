import pytest

from crowdwatch.ingest.sampling import Sampler


def _taken(period: float, times: list[float]) -> list[int]:
    sampler = Sampler(period)
    return [i for i, t in enumerate(times) if sampler.take(t)]


TEN_FPS = [i / 10 for i in range(40)]


@pytest.mark.parametrize(
    ("period", "times", "expected"),
    [
        (1.0, TEN_FPS, [0, 10, 20, 30]),
        (0.5, TEN_FPS, [0, 5, 10, 15, 20, 25, 30, 35]),
        (0.25, TEN_FPS, [0, 3, 5, 8, 10, 13, 15, 18, 20, 23, 25, 28, 30, 33, 35, 38]),
        (0.1, TEN_FPS, list(range(40))),
        (0.01, TEN_FPS, list(range(40))),  # period shorter than the frame interval: every frame
        (3.0, [i / 29.97 for i in range(300)], [0, 90, 180, 270]),  # NTSC rate
        # A gap: no burst afterwards, the grid resumes at the next tick.
        (1.0, [0.0, 0.5, 5.2, 5.3, 5.9, 6.0, 6.5], [0, 2, 5]),
        # Anchored at the first frame, not at zero.
        (1.0, [100.3, 100.9, 101.3, 102.2, 102.3], [0, 2, 4]),
    ],
)
def test_sampler(period: float, times: list[float], expected: list[int]) -> None:
    assert _taken(period, times) == expected


def test_period_must_be_positive() -> None:
    with pytest.raises(ValueError, match="period_s"):
        Sampler(0)

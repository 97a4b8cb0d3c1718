"""Count smoothing before the rules."""

from __future__ import annotations

import pytest

from crowdwatch.core.smoothing import EmaSmoother, MedianSmoother, NoSmoothing, Smoother, make_smoother


def run(smoother: Smoother, values: list[float]) -> list[float]:
    return [smoother.update(v) for v in values]


@pytest.mark.parametrize(
    ("window", "values", "expected"),
    [
        pytest.param(3, [5, 5, 50, 5, 5], [5, 5, 5, 5, 5], id="single-spike-removed"),
        pytest.param(3, [20, 20, 0, 20, 20], [20, 20, 20, 20, 20], id="single-dropout-removed"),
        pytest.param(3, [5, 5, 50, 50, 50], [5, 5, 5, 50, 50], id="step-passes-after-two-samples"),
        pytest.param(5, [5, 5, 5, 50, 50, 5, 5], [5, 5, 5, 5, 5, 5, 5], id="window-5-removes-double-spike"),
        pytest.param(1, [5, 50, 5], [5, 50, 5], id="window-1-passes-through"),
        pytest.param(3, [4], [4], id="first-value"),
        pytest.param(3, [4, 10], [4, 7], id="even-fill-is-mean-of-middle-two"),
        pytest.param(3, [1, 2, 3, 4, 5, 6], [1, 1.5, 2, 3, 4, 5], id="ramp-lags-one-sample"),
    ],
)
def test_median(window: int, values: list[float], expected: list[float]) -> None:
    assert run(MedianSmoother(window), values) == pytest.approx(expected)


@pytest.mark.parametrize("window", [0, -1])
def test_median_window_must_be_positive(window: int) -> None:
    with pytest.raises(ValueError, match="window must be at least 1"):
        MedianSmoother(window)


@pytest.mark.parametrize(
    ("alpha", "values", "expected"),
    [
        pytest.param(0.5, [10, 0, 0, 0], [10, 5, 2.5, 1.25], id="halving"),
        pytest.param(0.25, [0, 8, 8], [0, 2, 3.5], id="quarter"),
        pytest.param(1.0, [3, 9, 1], [3, 9, 1], id="alpha-1-passes-through"),
        pytest.param(0.1, [7], [7], id="first-value-unchanged"),
        pytest.param(0.5, [4, 4, 4], [4, 4, 4], id="constant-stays"),
    ],
)
def test_ema(alpha: float, values: list[float], expected: list[float]) -> None:
    assert run(EmaSmoother(alpha), values) == pytest.approx(expected)


@pytest.mark.parametrize("alpha", [0.0, -0.5, 1.0001, 2.0])
def test_ema_alpha_must_be_in_unit_interval(alpha: float) -> None:
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\]"):
        EmaSmoother(alpha)


def test_no_smoothing_passes_through() -> None:
    assert run(NoSmoothing(), [1, 100, 2]) == [1, 100, 2]


@pytest.mark.parametrize(
    ("method", "kind"), [("median", MedianSmoother), ("ema", EmaSmoother), ("none", NoSmoothing)]
)
def test_make_smoother(method: str, kind: type) -> None:
    assert isinstance(make_smoother(method), kind)


def test_make_smoother_passes_its_parameters() -> None:
    assert run(make_smoother("median", window=1), [1, 9]) == [1, 9]
    assert run(make_smoother("ema", alpha=0.25), [0, 8]) == [0, 2]


def test_make_smoother_rejects_unknown_method() -> None:
    with pytest.raises(ValueError, match="unknown smoothing method 'kalman'"):
        make_smoother("kalman")


def test_smoothers_are_independent() -> None:
    a, b = MedianSmoother(3), MedianSmoother(3)
    run(a, [100, 100, 100])
    assert b.update(1) == 1

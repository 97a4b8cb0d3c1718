"""Severity bands: by density (Fruin) and by count."""

from __future__ import annotations

import pytest

from crowdwatch.core.severity import FRUIN_DENSITY_BANDS, SeverityBands, count_bands_for
from crowdwatch.core.types import Severity

LOW, MEDIUM, HIGH, CRITICAL = Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL


@pytest.mark.parametrize(
    ("density", "severity"),
    [
        (0.0, LOW),
        (2.0, LOW),
        (3.49, LOW),
        (3.5, MEDIUM),
        (4.99, MEDIUM),
        (5.0, HIGH),
        (6.99, HIGH),
        (7.0, CRITICAL),
        (12.0, CRITICAL),
    ],
)
def test_fruin_density_bands(density: float, severity: Severity) -> None:
    assert FRUIN_DENSITY_BANDS.classify(density) is severity


@pytest.mark.parametrize(
    ("count", "severity"),
    [
        (0, LOW),
        (20, LOW),
        (29.9, LOW),
        (30, MEDIUM),
        (39.9, MEDIUM),
        (40, HIGH),
        (59.9, HIGH),
        (60, CRITICAL),
        (1000, CRITICAL),
    ],
)
def test_default_count_bands_are_relative_to_enter_count(count: float, severity: Severity) -> None:
    assert count_bands_for(20).classify(count) is severity


def test_count_bands_for() -> None:
    assert count_bands_for(10) == SeverityBands(medium=15, high=20, critical=30)


@pytest.mark.parametrize(
    ("bands", "value", "severity"),
    [
        ((1, 2, 3), 0.5, LOW),
        ((1, 2, 3), 1, MEDIUM),
        ((1, 1, 3), 1, HIGH),  # equal bounds: the higher band wins
        ((1, 1, 1), 1, CRITICAL),
        ((1, 1, 1), 0.99, LOW),
    ],
)
def test_custom_bands(bands: tuple[float, float, float], value: float, severity: Severity) -> None:
    assert SeverityBands(*bands).classify(value) is severity


@pytest.mark.parametrize(
    "bands",
    [
        pytest.param((0, 1, 2), id="zero-medium"),
        pytest.param((-1, 1, 2), id="negative-medium"),
        pytest.param((3, 2, 4), id="high-below-medium"),
        pytest.param((1, 3, 2), id="critical-below-high"),
    ],
)
def test_bands_must_rise(bands: tuple[float, float, float]) -> None:
    with pytest.raises(ValueError, match="severity bands must rise"):
        SeverityBands(*bands)


def test_severity_orders_as_worse_than() -> None:
    assert LOW < MEDIUM < HIGH < CRITICAL
    assert Severity.parse("high") is HIGH
    assert CRITICAL.label == "critical"

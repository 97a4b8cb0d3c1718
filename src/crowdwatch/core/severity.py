"""Severity of a gathering: from density where the zone is calibrated, else from count bands."""

from __future__ import annotations

from dataclasses import dataclass

from crowdwatch.core.types import Severity


@dataclass(frozen=True, slots=True)
class SeverityBands:
    """Lower bounds of medium, high and critical. Below `medium` a gathering is low."""

    medium: float
    high: float
    critical: float

    def __post_init__(self) -> None:
        if not 0 < self.medium <= self.high <= self.critical:
            raise ValueError(
                f"severity bands must rise: medium {self.medium} <= high {self.high} "
                f"<= critical {self.critical}"
            )

    def classify(self, value: float) -> Severity:
        if value >= self.critical:
            return Severity.CRITICAL
        if value >= self.high:
            return Severity.HIGH
        if value >= self.medium:
            return Severity.MEDIUM
        return Severity.LOW


# Fruin levels of service: 3.5 p/m2 involuntary contact, 5 dangerous, 7 crush risk.
FRUIN_DENSITY_BANDS = SeverityBands(medium=3.5, high=5.0, critical=7.0)


def count_bands_for(enter_count: float) -> SeverityBands:
    """Default count bands, relative to the zone's own threshold."""
    return SeverityBands(medium=1.5 * enter_count, high=2.0 * enter_count, critical=3.0 * enter_count)

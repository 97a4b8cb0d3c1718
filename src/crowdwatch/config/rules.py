"""Gathering rules: when a zone's count becomes a gathering, how it is updated and ended."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from crowdwatch.config.base import FieldProblemsError, StrictModel


class SmoothingConfig(StrictModel):
    method: Literal["median", "ema", "none"] = Field(
        "median", description="How per-frame counts are smoothed before the rules see them."
    )
    window: int = Field(3, ge=1, le=100, description="Number of recent samples in the median window.")
    alpha: float = Field(0.5, gt=0, le=1, description="EMA weight of the newest sample (method: ema).")


class SeverityCountsConfig(StrictModel):
    medium: float | None = Field(
        None, gt=0, description="Count at which severity becomes medium. Default: 1.5 x enter_count."
    )
    high: float | None = Field(
        None, gt=0, description="Count at which severity becomes high. Default: 2 x enter_count."
    )
    critical: float | None = Field(
        None, gt=0, description="Count at which severity becomes critical. Default: 3 x enter_count."
    )


class SeverityDensityConfig(StrictModel):
    """Fruin-derived levels of service, in persons per square metre."""

    medium: float = Field(3.5, gt=0, description="p/m2 of involuntary contact: medium.")
    high: float = Field(5.0, gt=0, description="p/m2 at which crowds become dangerous: high.")
    critical: float = Field(7.0, gt=0, description="p/m2 of crush risk: critical.")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.medium < self.high < self.critical:
            raise ValueError("density severity levels must rise: medium < high < critical")
        return self


class RulesConfig(StrictModel):
    enter_count: float = Field(
        20, gt=0, description="A gathering starts when the smoothed count reaches this."
    )
    exit_count: float | None = Field(
        None,
        gt=0,  # the exit test is `count < exit_count`: 0 would never end a gathering
        description="It ends when the count stays below this (default 0.7 x enter_count); "
        "lower than enter_count so that it does not flap.",
    )
    enter_density: float | None = Field(
        2.0,
        gt=0,
        description="Or when density (p/m2) reaches this; only for zones with a ground calibration.",
    )
    exit_density: float | None = Field(
        None, gt=0, description="Density below which it ends (default 0.7 x enter_density)."
    )
    min_duration_s: float = Field(
        10, ge=0, description="The enter condition must hold this long before the gathering starts."
    )
    clear_after_s: float = Field(
        30, ge=0, description="The exit condition must hold this long before the gathering ends."
    )
    update_every_s: float = Field(
        30,
        gt=0,
        description="While a gathering lasts, an update event at most this often "
        "(at once when severity changes).",
    )
    cooldown_s: float = Field(
        60, ge=0, description="After a gathering ends, no new one starts in the zone for this long."
    )
    rise_per_min: float | None = Field(
        None,
        gt=0,
        description="Fire early, without waiting for min_duration, when the count rises faster "
        "than this many people per minute while at least exit_count people are present.",
    )
    rise_window_s: float = Field(30, gt=0, description="Time window over which the rise rate is measured.")
    smoothing: SmoothingConfig = Field(
        default_factory=SmoothingConfig, description="Count smoothing before the rules."
    )
    severity_counts: SeverityCountsConfig = Field(
        default_factory=SeverityCountsConfig, description="Severity by count (uncalibrated zones)."
    )
    severity_density: SeverityDensityConfig = Field(
        default_factory=SeverityDensityConfig, description="Severity by density (calibrated zones)."
    )

    @model_validator(mode="after")
    def _hysteresis(self) -> Self:
        if self.exit_count is not None and self.exit_count >= self.enter_count:
            raise ValueError(f"exit_count ({self.exit_count}) must be below enter_count ({self.enter_count})")
        if (
            self.exit_density is not None
            and self.enter_density is not None
            and self.exit_density >= self.enter_density
        ):
            raise ValueError(
                f"exit_density ({self.exit_density}) must be below enter_density ({self.enter_density})"
            )
        sc = self.severity_counts
        medium = sc.medium if sc.medium is not None else 1.5 * self.enter_count
        high = sc.high if sc.high is not None else 2.0 * self.enter_count
        critical = sc.critical if sc.critical is not None else 3.0 * self.enter_count
        if not medium <= high <= critical:
            raise FieldProblemsError(
                [
                    (
                        "severity_counts",
                        f"levels must rise: medium ({medium:g}) <= high ({high:g}) <= critical "
                        f"({critical:g}); unset levels default to 1.5, 2 and 3 x enter_count",
                    )
                ]
            )
        return self


class RulesOverride(StrictModel):
    """Per-zone changes to the global rules; unset fields keep the global value."""

    enter_count: float | None = Field(None, gt=0, description="See rules.enter_count.")
    exit_count: float | None = Field(None, gt=0, description="See rules.exit_count.")
    enter_density: float | None = Field(None, gt=0, description="See rules.enter_density.")
    exit_density: float | None = Field(None, gt=0, description="See rules.exit_density.")
    min_duration_s: float | None = Field(None, ge=0, description="See rules.min_duration_s.")
    clear_after_s: float | None = Field(None, ge=0, description="See rules.clear_after_s.")
    update_every_s: float | None = Field(None, gt=0, description="See rules.update_every_s.")
    cooldown_s: float | None = Field(None, ge=0, description="See rules.cooldown_s.")
    rise_per_min: float | None = Field(None, gt=0, description="See rules.rise_per_min.")

    def apply(self, base: RulesConfig) -> RulesConfig:
        changes = self.model_dump(exclude_none=True)
        merged = base.model_dump() | changes
        return RulesConfig.model_validate(merged)

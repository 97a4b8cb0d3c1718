"""Turn validated config into core objects. The only place that knows both."""

from __future__ import annotations

from functools import partial

from crowdwatch.config.camera import CameraConfig
from crowdwatch.config.rules import RulesConfig
from crowdwatch.core.analysis import CameraAnalysis
from crowdwatch.core.crowd import GatheringRules
from crowdwatch.core.severity import SeverityBands, count_bands_for
from crowdwatch.core.smoothing import make_smoother
from crowdwatch.core.zones import GroundCalibration, make_zone


def gathering_rules(cfg: RulesConfig) -> GatheringRules:
    defaults = count_bands_for(cfg.enter_count)
    sc = cfg.severity_counts
    sd = cfg.severity_density
    return GatheringRules(
        enter_count=cfg.enter_count,
        exit_count=cfg.exit_count if cfg.exit_count is not None else 0.7 * cfg.enter_count,
        enter_density=cfg.enter_density,
        exit_density=(
            cfg.exit_density
            if cfg.exit_density is not None
            else (0.7 * cfg.enter_density if cfg.enter_density is not None else None)
        ),
        min_duration_s=cfg.min_duration_s,
        clear_after_s=cfg.clear_after_s,
        update_every_s=cfg.update_every_s,
        cooldown_s=cfg.cooldown_s,
        rise_per_min=cfg.rise_per_min,
        rise_window_s=cfg.rise_window_s,
        count_bands=SeverityBands(
            medium=sc.medium or defaults.medium,
            high=sc.high or defaults.high,
            critical=sc.critical or defaults.critical,
        ),
        density_bands=SeverityBands(medium=sd.medium, high=sd.high, critical=sd.critical),
    )


def camera_analysis(camera: CameraConfig, rules: RulesConfig) -> CameraAnalysis:
    calibration = (
        GroundCalibration.fit(camera.calibration.image_points, camera.calibration.ground_points)
        if camera.calibration is not None
        else None
    )
    zones = []
    for zone_cfg in camera.zones:
        zone_rules = zone_cfg.rules.apply(rules) if zone_cfg.rules is not None else rules
        zones.append((make_zone(zone_cfg.id, zone_cfg.polygon, calibration), gathering_rules(zone_rules)))
    sm = rules.smoothing
    return CameraAnalysis(
        camera.id,
        camera.location.point(),
        zones,
        partial(make_smoother, sm.method, sm.window, sm.alpha),
    )

"""Turn validated config into core objects. The only place that knows both."""

from __future__ import annotations

from functools import partial

from crowdwatch.config.camera import CameraConfig
from crowdwatch.config.counting import CountingConfig
from crowdwatch.config.rules import RulesConfig
from crowdwatch.core.analysis import CameraAnalysis, ZoneSpec
from crowdwatch.core.auto_mode import AutoParams
from crowdwatch.core.crowd import GatheringRules
from crowdwatch.core.density import DensityCalibration
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


def auto_params(counting: CountingConfig) -> AutoParams:
    a = counting.auto
    return AutoParams(
        to_density_count=a.to_density_count,
        to_detector_count=a.to_detector_count,
        small_person_px=a.small_person_px,
        min_dwell_s=a.min_dwell_s,
        probe_every_s=a.probe_every_s,
        probe_ratio=a.probe_ratio,
    )


def density_calibration(camera: CameraConfig, counting: CountingConfig) -> DensityCalibration:
    cal = camera.density_calibration or counting.density.calibration
    return DensityCalibration(a=cal.scale, b=cal.offset, camera_id=camera.id)


def camera_analysis(camera: CameraConfig, rules: RulesConfig, counting: CountingConfig) -> CameraAnalysis:
    ground = (
        GroundCalibration.fit(camera.calibration.image_points, camera.calibration.ground_points)
        if camera.calibration is not None
        else None
    )
    specs = []
    for zone_cfg in camera.zones:
        zone_rules = zone_cfg.rules.apply(rules) if zone_cfg.rules is not None else rules
        specs.append(
            ZoneSpec(
                make_zone(zone_cfg.id, zone_cfg.polygon, ground), gathering_rules(zone_rules), zone_cfg.method
            )
        )
    sm = rules.smoothing
    return CameraAnalysis(
        camera.id,
        camera.location.point(),
        specs,
        partial(make_smoother, sm.method, sm.window, sm.alpha),
        auto=auto_params(counting),
        density_calibration=density_calibration(camera, counting),
    )

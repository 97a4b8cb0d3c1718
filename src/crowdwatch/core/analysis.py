"""Per-camera analysis: detector boxes and/or a density map -> zone counts -> smoothed counts ->
gathering events. Each zone has its counting method (detector, tiled, density, auto)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from crowdwatch.core.auto_mode import AutoParams, AutoSwitch
from crowdwatch.core.crowd import GatheringRules, GatheringTracker, Phase, ZoneIdentity
from crowdwatch.core.density import DensityCalibration, DensityMap
from crowdwatch.core.smoothing import Smoother
from crowdwatch.core.types import CountMethod, CrowdEvent, Detections, GeoPoint, ZoneCount
from crowdwatch.core.zones import Zone

ZoneMethod = str  # "detector" | "tiled" | "density" | "auto"
METHODS = ("detector", "tiled", "density", "auto")


@dataclass(frozen=True, slots=True)
class ZoneSpec:
    zone: Zone
    rules: GatheringRules
    method: ZoneMethod = "detector"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"zone {self.zone.zone_id}: unknown counting method {self.method!r}")


@dataclass(frozen=True, slots=True)
class FrameInputs:
    """What the models produced for one frame. Only what the plan asked for is present."""

    detections: Detections | None = None
    tiled: Detections | None = None
    density: DensityMap | None = None
    detector_model: str = ""
    density_model: str = ""


@dataclass(frozen=True, slots=True)
class ZoneState:
    """What the operator sees for one zone right now."""

    camera_id: str
    zone_id: str
    raw_count: float
    count: float
    density_per_m2: float | None
    method: CountMethod
    phase: Phase
    ts: float


@dataclass(frozen=True, slots=True)
class AnalysisResult:
    counts: tuple[ZoneCount, ...]
    states: tuple[ZoneState, ...]
    events: tuple[CrowdEvent, ...]


@dataclass(slots=True)
class _Lane:
    spec: ZoneSpec
    smoother: Smoother
    tracker: GatheringTracker
    auto: AutoSwitch | None = None
    mode: CountMethod = "detector"
    frame_share: float = field(default=0.0)


class CameraAnalysis:
    """Owns the zones of one camera with their smoothers, mode switches and trackers."""

    def __init__(
        self,
        camera_id: str,
        location: GeoPoint,
        zones: Sequence[ZoneSpec],
        smoother_factory: Callable[[], Smoother],
        *,
        auto: AutoParams | None = None,
        density_calibration: DensityCalibration | None = None,
    ) -> None:
        self.camera_id = camera_id
        self._calibration = density_calibration or DensityCalibration()
        self._lanes = []
        for spec in zones:
            lane = _Lane(
                spec,
                smoother_factory(),
                GatheringTracker(ZoneIdentity(camera_id, spec.zone.zone_id, location), spec.rules),
                AutoSwitch(auto or AutoParams()) if spec.method == "auto" else None,
            )
            lane.mode = (
                "density" if spec.method == "density" else "tiled" if spec.method == "tiled" else "detector"
            )
            self._lanes.append(lane)

    @property
    def zone_ids(self) -> list[str]:
        return [lane.spec.zone.zone_id for lane in self._lanes]

    @property
    def needs_detector(self) -> bool:
        return any(lane.spec.method in ("detector", "auto") for lane in self._lanes)

    @property
    def may_need_density(self) -> bool:
        return any(lane.spec.method in ("density", "auto") for lane in self._lanes)

    def zones_outside(self, frame_size: tuple[int, int]) -> list[str]:
        """The zones reaching beyond a (width, height) picture (drawn for another resolution?)."""
        return [lane.spec.zone.zone_id for lane in self._lanes if lane.spec.zone.outside(frame_size)]

    def tiled_zones(self) -> list[Zone]:
        return [lane.spec.zone for lane in self._lanes if lane.spec.method == "tiled"]

    def plan_density(self, now: float, detections: Detections | None) -> bool:
        """Whether this frame needs a density map; settles each auto zone's mode first. `now`:
        the frame's time on the clock that intervals are measured on (`update`'s `mono`)."""
        need = False
        for lane in self._lanes:
            if lane.auto is not None:
                in_zone = _in_zone(lane.spec.zone, detections)
                lane.mode = lane.auto.before_density(now, in_zone)
                need |= lane.auto.probe_due(now)
            need |= lane.mode == "density"
        return need

    def update(
        self, ts: float, inputs: FrameInputs, frame_size: tuple[int, int], mono: float | None = None
    ) -> AnalysisResult:
        """`ts` stamps counts and events (wall clock); `mono` times the rules' intervals (a
        monotonic clock, so that a step of the wall clock neither stretches nor skips a wait;
        `ts` when not given). `frame_size` is (width, height): the density calibration's
        background offset is shared out by each zone's share of the frame."""
        now = ts if mono is None else mono
        counts: list[ZoneCount] = []
        states: list[ZoneState] = []
        events: list[CrowdEvent] = []
        for lane in self._lanes:
            zone = lane.spec.zone
            raw, model = self._count(lane, inputs, frame_size)
            if lane.auto is not None and lane.mode == "detector" and inputs.density is not None:
                # A probe (or a map computed for another zone): check the boxes against it.
                by_density = self._density_count(zone, inputs, frame_size)
                lane.mode = lane.auto.after_probe(now, by_density, int(raw))
                if lane.mode == "density":
                    raw, model = by_density, inputs.density_model
            if lane.auto is not None and lane.mode == "density":
                lane.auto.after_density(now, raw)
            smoothed = lane.smoother.update(raw)
            density = zone.density(smoothed)
            zc = ZoneCount(self.camera_id, zone.zone_id, ts, smoothed, density, lane.mode)
            counts.append(zc)
            events.extend(lane.tracker.observe(zc, model, now))
            states.append(
                ZoneState(
                    self.camera_id, zone.zone_id, raw, smoothed, density, lane.mode, lane.tracker.phase, ts
                )
            )
        return AnalysisResult(tuple(counts), tuple(states), tuple(events))

    def _count(self, lane: _Lane, inputs: FrameInputs, frame_size: tuple[int, int]) -> tuple[float, str]:
        zone = lane.spec.zone
        if lane.mode == "density":
            return self._density_count(zone, inputs, frame_size), inputs.density_model
        if lane.mode == "tiled":
            if inputs.tiled is None:
                raise ValueError(f"zone {zone.zone_id} counts tiled boxes but none were computed")
            return float(zone.count(inputs.tiled)), inputs.detector_model
        if inputs.detections is None:
            raise ValueError(f"zone {zone.zone_id} counts boxes but the detector did not run")
        return float(zone.count(inputs.detections)), inputs.detector_model

    def _density_count(self, zone: Zone, inputs: FrameInputs, frame_size: tuple[int, int]) -> float:
        """The zone's calibrated density count (never negative)."""
        if inputs.density is None:
            raise ValueError(f"zone {zone.zone_id} counts by density but no density map was computed")
        # The zone's share of the picture, from its visible part only: the map covers nothing
        # beyond the frame (a zone drawn for a larger picture would get too much background).
        share = zone.visible_share(frame_size)
        raw = self._calibration.apply(inputs.density.integrate_polygon(zone.polygon), min(share, 1.0))
        return max(raw, 0.0)


def _in_zone(zone: Zone, detections: Detections | None) -> Detections:
    if detections is None or len(detections) == 0:
        return Detections.empty()
    return detections[zone.contains(detections.feet())]

"""How zones are counted: boxes, tiled boxes, density maps, or automatic switching."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from crowdwatch.config.base import Device, StrictModel

CountingMethod = Literal["detector", "tiled", "density", "auto"]


class LinearCalibrationConfig(StrictModel):
    """count = scale x raw + offset x (zone's share of the frame). Fit it with
    `benchmarks/fit_density_calibration.py` on labeled frames that are not used for testing."""

    scale: float = Field(1.0, gt=0, description="Multiplies the raw density integral.")
    offset: float = Field(
        0.0,
        description="Background bias for the whole frame (negative removes phantom people); "
        "a zone gets the share of it that matches its share of the frame.",
    )


class DensityConfig(StrictModel):
    model: str = Field(
        "csrnet-density",
        description="Density model: a catalog name, a model trained here (`crowdwatch models "
        "train NAME`, e.g. csrnet-mall) or an ONNX path.",
    )
    device: Device = Field(
        "auto",
        description="Where the density model runs: cpu (ONNX Runtime), cuda or cuda:N (PyTorch, "
        "needs the ultralytics extra), auto = the first CUDA GPU when PyTorch sees one, else cpu.",
    )
    half: bool = Field(True, description="Half precision on CUDA; ignored on CPU.")
    threads: int = Field(0, ge=0, description="ONNX Runtime threads (device cpu); 0 = one per core.")
    max_side: int | None = Field(
        None,
        ge=64,
        description="Shrink larger frames to this longest side first: faster (cost "
        "grows with pixels) but people shrink below what the network learnt and counts drop "
        "(Mall at 480 px: MAE 5.6 -> 8.9). null = never shrink; measure before setting it.",
    )
    calibration: LinearCalibrationConfig = Field(
        default_factory=LinearCalibrationConfig,
        description="Default correction of the raw integral; cameras may set their own.",
    )


class AutoConfig(StrictModel):
    """`auto` counts with boxes while they are reliable and switches to density in crowds."""

    to_density_count: float = Field(
        15,
        gt=0,
        description="Switch to density when the detector sees this many in the zone "
        "(beyond ~15 people in view, occlusion makes boxes undercount).",
    )
    to_detector_count: float = Field(
        8, ge=0, description="Switch back when the density count falls below this (lower: hysteresis)."
    )
    small_person_px: float = Field(
        28,
        ge=0,
        description="Also switch to density when the median box height in the zone is "
        "below this many pixels (far field: small people are missed).",
    )
    min_dwell_s: float = Field(
        10, ge=0, description="Stay at least this long in a mode before switching back."
    )
    probe_every_s: float | None = Field(
        60,
        ge=0,
        description="While counting by boxes, also run the density model this often (0 = every "
        "frame, the right choice on a GPU; null = never) and switch when it counts at least "
        "to_density_count and probe_ratio times the boxes: crowds the detector barely sees "
        "(heads without bodies, far away) give few boxes. Costs one density map per camera "
        "per probe: ~1-2 s for 640x480 and ~8 s for 1024x768 on a 2-core CPU (more for HD "
        "frames: see max_side), ~10 ms on a GPU.",
    )
    probe_ratio: float = Field(
        2,
        ge=1,
        description="A probe switches to density only when the density count is at least this "
        "many times the boxes in the zone.",
    )

    @model_validator(mode="after")
    def _hysteresis(self) -> Self:
        if self.to_detector_count >= self.to_density_count:
            raise ValueError(
                f"to_detector_count ({self.to_detector_count:g}) must be below to_density_count "
                f"({self.to_density_count:g})"
            )
        return self


class TilesConfig(StrictModel):
    size: int = Field(640, ge=64, description="Tile side in pixels (the model's input size).")
    overlap: float = Field(0.2, ge=0, lt=0.9, description="Fraction by which neighbouring tiles overlap.")
    upscale: float = Field(
        2.0,
        ge=1,
        le=4,
        description="Enlarge the zone's area this much before tiling, so that "
        "small far-field people reach a size the model sees.",
    )


class CountingConfig(StrictModel):
    density: DensityConfig = Field(default_factory=DensityConfig, description="Density model settings.")
    auto: AutoConfig = Field(default_factory=AutoConfig, description="Automatic switching.")
    tiles: TilesConfig = Field(default_factory=TilesConfig, description="Tiled detection.")

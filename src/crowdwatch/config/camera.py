"""Cameras, their zones and optional ground calibration."""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from crowdwatch.config.base import FieldProblemsError, StrictModel
from crowdwatch.config.counting import CountingMethod, LinearCalibrationConfig
from crowdwatch.config.geo import LocationConfig
from crowdwatch.config.polygons import first_crossing
from crowdwatch.config.rules import RulesOverride
from crowdwatch.core.geometry import fit_homography
from crowdwatch.core.zones import GroundCalibration

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "file")


class ReconnectConfig(StrictModel):
    initial_s: float = Field(1.0, gt=0, description="First wait before reconnecting.")
    max_s: float = Field(30.0, gt=0, description="Longest wait between reconnect attempts.")
    multiplier: float = Field(2.0, ge=1, description="Backoff growth per failed attempt.")
    jitter: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Random +/- fraction added to each wait so that many "
        "cameras do not reconnect in lockstep.",
    )


class CalibrationConfig(StrictModel):
    """Four or more image points and where they lie on the ground, in metres."""

    image_points: list[tuple[float, float]] = Field(
        description="Pixel coordinates (x, y) of ground marks in the camera image."
    )
    ground_points: list[tuple[float, float]] = Field(
        description="The same marks on the ground plane, in metres, in the same order."
    )

    @model_validator(mode="after")
    def _pairs(self) -> Self:
        if len(self.image_points) != len(self.ground_points):
            raise ValueError(
                f"image_points has {len(self.image_points)} points but ground_points has "
                f"{len(self.ground_points)}; they must pair up"
            )
        if len(self.image_points) < 4:
            raise ValueError(f"need at least 4 point pairs, got {len(self.image_points)}")
        # Collinear, repeated or mis-ordered marks: fail at load time (ValueError), not when
        # the worker starts the camera.
        fit_homography(self.image_points, self.ground_points)
        return self


class ZoneConfig(StrictModel):
    id: str = Field(pattern=ID_PATTERN, description="Zone id, unique within the camera.")
    name: str = Field("", description="Human-readable name shown to operators.")
    polygon: list[tuple[float, float]] = Field(
        description="Zone outline in image pixels (x, y); a person counts when their feet "
        "(bottom-centre of the box) are inside."
    )
    rules: RulesOverride | None = Field(None, description="Changes to the global rules for this zone.")
    method: CountingMethod = Field(
        "auto",
        description="How people are counted: detector (boxes, feet in zone), tiled (boxes on "
        "enlarged overlapping tiles: far field), density (density map summed over the zone: "
        "dense crowds), auto (detector while reliable, density in crowds).",
    )

    @field_validator("polygon")
    @classmethod
    def _polygon(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if len(v) < 3:
            raise ValueError(f"a zone polygon needs at least 3 points, got {len(v)}")
        if any(x < 0 or y < 0 for x, y in v):
            raise ValueError("polygon points are pixel coordinates and cannot be negative")
        # (Coordinates are finite: StrictModel refuses inf and NaN.)
        # A self-crossing outline (a bow tie) has a wrong shoelace area, hence wrong densities and
        # severities. Points all on one line are reported below as having no area.
        crossing = first_crossing(v)
        if crossing is not None and not _on_one_line(v):
            (a, b), (c, d) = crossing
            raise ValueError(
                f"polygon outline crosses itself: the edge from point {a} to point {b} meets the edge "
                f"from point {c} to point {d} (counting from 0); list the points in order around "
                "the zone"
            )
        # Shoelace area: a degenerate polygon can never contain anyone.
        area = 0.0
        for (x1, y1), (x2, y2) in zip(v, v[1:] + v[:1], strict=True):
            area += x1 * y2 - x2 * y1
        if abs(area) < 1.0:
            raise ValueError("polygon has no area (points are collinear or repeated)")
        return v


def _on_one_line(points: list[tuple[float, float]]) -> bool:
    x0, y0 = points[0]
    offsets = [(x - x0, y - y0) for x, y in points if (x, y) != (x0, y0)]
    if not offsets:
        return True
    dx0, dy0 = offsets[0]
    return all(dx * dy0 - dy * dx0 == 0 for dx, dy in offsets)


class CameraConfig(StrictModel):
    id: str = Field(pattern=ID_PATTERN, description="Camera id, unique; the Kafka message key.")
    name: str = Field("", description="Human-readable name shown to operators.")
    url: str = Field(
        description="Video source: rtsp://, http(s)://, file:// URL or a local file path. "
        "Credentials in the URL are never logged or shown."
    )
    location: LocationConfig = Field(description="Where the camera stands; used for routing.")
    center: str | None = Field(
        None, description="Route this camera's alerts to this center id, whatever the geography."
    )
    zones: list[ZoneConfig] = Field(min_length=1, description="Watched zones of this camera.")
    calibration: CalibrationConfig | None = Field(
        None, description="Ground calibration: gives zones an area in m2 and densities."
    )
    density_calibration: LinearCalibrationConfig | None = Field(
        None, description="This camera's correction of the density count (else counting.density's)."
    )
    sample_every_s: float = Field(
        1.0, gt=0, description="Analyse one frame this often; frames in between are dropped."
    )
    loop: bool = Field(False, description="Files only: start again at the end (demos).")
    realtime: bool = Field(
        True,
        description="Files only: read at the file's own frame rate as a live camera would. "
        "When false, every sampled frame is analysed as fast as possible (offline analysis).",
    )
    open_timeout_s: float = Field(10, gt=0, description="Give up opening the stream after this.")
    read_timeout_s: float = Field(10, gt=0, description="Give up waiting for a frame after this.")
    offline_after_s: float = Field(
        20, gt=0, description="Report the camera offline after this long without frames."
    )
    reconnect: ReconnectConfig = Field(
        default_factory=ReconnectConfig, description="Backoff between reconnect attempts."
    )
    enabled: bool = Field(True, description="Skip this camera when false.")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("url is empty")
        m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", v)
        if m and m.group(1).lower() not in _URL_SCHEMES:
            raise ValueError(f"unsupported URL scheme '{m.group(1)}' (use one of {', '.join(_URL_SCHEMES)})")
        if m and m.group(1).lower() != "file" and not re.match(r"^[^:]+://[^/?#]+", v):
            raise ValueError("URL has no host")
        return v

    @model_validator(mode="after")
    def _unique_zones(self) -> Self:
        first: dict[str, int] = {}
        problems: list[tuple[str, str]] = []
        for i, zone in enumerate(self.zones):
            if zone.id in first:
                problems.append(
                    (f"zones[{i}].id", f"zone id '{zone.id}' is already used by zones[{first[zone.id]}]")
                )
            first.setdefault(zone.id, i)
        if problems:
            raise FieldProblemsError(problems)
        return self

    @model_validator(mode="after")
    def _zones_on_ground(self) -> Self:
        # A zone reaching past the horizon has no meaningful area: fail at load time, not when
        # the worker builds the zone.
        if self.calibration is None:
            return self
        calibration = GroundCalibration.fit(self.calibration.image_points, self.calibration.ground_points)
        problems: list[tuple[str, str]] = []
        for i, zone in enumerate(self.zones):
            try:
                calibration.area_m2(zone.polygon)
            except ValueError as exc:
                problems.append((f"zones[{i}].polygon", str(exc)))
        if problems:
            raise FieldProblemsError(problems)
        return self

    @property
    def kind(self) -> Literal["file", "stream"]:
        lower = self.url.lower()
        return "stream" if "://" in lower and not lower.startswith("file://") else "file"

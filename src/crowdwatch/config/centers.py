"""The hierarchy of operations centers and their boundaries."""

from __future__ import annotations

import math
from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from crowdwatch.config.base import FieldProblemsError, StrictModel
from crowdwatch.config.camera import ID_PATTERN
from crowdwatch.config.polygons import first_crossing

CenterLevel = Literal["district", "street", "community"]
LEVEL_DEPTH: dict[str, int] = {"district": 0, "street": 1, "community": 2}


class ContactConfig(StrictModel):
    name: str = Field("", description="Duty officer or desk name.")
    phone: str = Field("", description="Phone number of the duty desk.")
    email: str = Field("", description="E-mail of the duty desk.")


class CenterConfig(StrictModel):
    id: str = Field(pattern=ID_PATTERN, description="Center id, unique.")
    name: str = Field(description="Name shown to operators.")
    level: CenterLevel = Field(description="district (county), street (township) or community (grid).")
    parent: str | None = Field(None, description="Id of the parent center; required except for districts.")
    boundary: dict[str, Any] = Field(
        description="GeoJSON Polygon or MultiPolygon geometry (lon, lat order) of the area served."
    )
    contact: ContactConfig = Field(default_factory=ContactConfig, description="Who to call.")
    units: list[str] = Field(default_factory=list, description="Units this center can dispatch.")
    ack_sla_s: float = Field(
        120, gt=0, description="Escalate to the parent center when not acknowledged this fast."
    )

    @field_validator("boundary")
    @classmethod
    def _geojson(cls, v: dict[str, Any]) -> dict[str, Any]:
        kind = v.get("type")
        if kind not in ("Polygon", "MultiPolygon"):
            raise ValueError(f"boundary must be a GeoJSON Polygon or MultiPolygon, got type={kind!r}")
        coords = v.get("coordinates")
        if not isinstance(coords, list) or not coords:
            raise ValueError("boundary has no coordinates")
        polygons = coords if kind == "MultiPolygon" else [coords]
        for p, poly in enumerate(polygons):
            if not isinstance(poly, list) or not poly:
                raise ValueError("boundary polygon has no rings")
            for r, ring in enumerate(poly):
                if not isinstance(ring, list) or len(ring) < 4:
                    raise ValueError("each boundary ring needs at least 4 positions (closed)")
                for pos in ring:
                    if (
                        not isinstance(pos, list | tuple)
                        or len(pos) < 2
                        or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in pos[:2])
                    ):
                        raise ValueError(f"boundary position {pos!r:.60} is not [lon, lat]")
                    try:
                        lon, lat = float(pos[0]), float(pos[1])
                    except OverflowError:  # an integer of hundreds of digits
                        raise ValueError(f"boundary position {pos!r:.60} is outside lon/lat range") from None
                    if not (math.isfinite(lon) and math.isfinite(lat)):
                        raise ValueError(f"boundary position {list(pos)} is not a finite [lon, lat]")
                    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                        raise ValueError(
                            f"boundary position {list(pos)} is outside lon/lat range "
                            "(GeoJSON order is [lon, lat])"
                        )
                # A self-crossing ring gives wrong routing answers (the router refuses it at
                # start-up, with shapely; this reports it at validation already).
                crossing = first_crossing(ring)
                if crossing is not None:
                    (a, b), (c, d) = crossing
                    where = f"coordinates[{p}][{r}]" if kind == "MultiPolygon" else f"coordinates[{r}]"
                    raise ValueError(
                        f"boundary ring {where} crosses itself: the edge from position {a} to {b} "
                        f"meets the edge from position {c} to {d} (counting from 0)"
                    )
        # What else the router refuses at start-up (a hole outside its shell, parts of a
        # MultiPolygon that overlap or share an edge) is reported here already.
        import shapely
        from shapely.geometry import shape

        geom = shape(v)
        if not geom.is_valid:
            raise ValueError(f"boundary is not a valid polygon: {shapely.is_valid_reason(geom)}")
        return v

    @model_validator(mode="after")
    def _parent(self) -> Self:
        if self.level != "district" and not self.parent:
            raise FieldProblemsError([("parent", f"a {self.level} center needs a parent")])
        return self


class RoutingConfig(StrictModel):
    max_km: float = Field(
        2.0,
        ge=0,
        description="A camera outside every boundary goes to the nearest street "
        "center within this distance, else to the nearest district.",
    )

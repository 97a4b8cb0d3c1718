"""Build the core `Router` from the validated configuration: hierarchy, geometry, overrides."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from crowdwatch.alerting.geoindex import ShapelyGeoIndex
from crowdwatch.core.routing import CenterDirectory, CenterInfo, GeoIndex, Router

if TYPE_CHECKING:
    from crowdwatch.config.centers import CenterConfig
    from crowdwatch.config.root import AppConfig


def center_directory(centers: Iterable[CenterConfig]) -> CenterDirectory:
    return CenterDirectory(CenterInfo(c.id, c.name, c.level, c.parent, c.ack_sla_s) for c in centers)


def build_router(config: AppConfig, geo: GeoIndex | None = None) -> Router:
    """`geo` defaults to a ShapelyGeoIndex over the configured boundaries."""
    return Router(
        directory=center_directory(config.centers),
        geo=geo if geo is not None else ShapelyGeoIndex.from_centers(config.centers),
        max_km=config.routing.max_km,
        overrides={cam.id: cam.center for cam in config.cameras if cam.center is not None},
        camera_locations={cam.id: cam.location.point() for cam in config.cameras},
    )

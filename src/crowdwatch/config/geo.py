"""Geographic points as written in config files."""

from pydantic import Field

from crowdwatch.config.base import StrictModel
from crowdwatch.core.types import GeoPoint


class LocationConfig(StrictModel):
    lat: float = Field(ge=-90, le=90, description="Latitude in degrees (WGS84).")
    lon: float = Field(ge=-180, le=180, description="Longitude in degrees (WGS84).")

    def point(self) -> GeoPoint:
        return GeoPoint(lat=self.lat, lon=self.lon)

"""Event bus and alert store backends, chosen by `type`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from crowdwatch.config.base import StrictModel


class MemoryBusConfig(StrictModel):
    type: Literal["memory"] = Field("memory", description="In-process bus (embedded mode).")
    max_messages_per_topic: int = Field(
        1_000_000, ge=1000, description="Oldest committed messages are trimmed beyond this."
    )


BusConfig = Annotated[MemoryBusConfig, Field(discriminator="type")]


class MemoryStoreConfig(StrictModel):
    type: Literal["memory"] = Field("memory", description="In-process alert store (embedded mode).")


StoreConfig = Annotated[MemoryStoreConfig, Field(discriminator="type")]


class MetricsConfig(StrictModel):
    enabled: bool = Field(True, description="Serve Prometheus metrics over HTTP.")
    host: str = Field("127.0.0.1", description="Address the metrics endpoint listens on.")
    port: int = Field(9464, ge=0, le=65535, description="Port of the metrics endpoint (0 = any).")

"""Event bus and alert store backends, chosen by `type`."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, model_validator

from crowdwatch.config.base import StrictModel


class MemoryBusConfig(StrictModel):
    type: Literal["memory"] = Field("memory", description="In-process bus (embedded mode).")
    max_messages_per_topic: int = Field(
        1_000_000, ge=1000, description="Oldest committed messages are trimmed beyond this."
    )


BusConfig = Annotated[MemoryBusConfig, Field(discriminator="type")]


class MemoryStoreConfig(StrictModel):
    type: Literal["memory"] = Field("memory", description="In-process alert store (embedded mode).")


class RedisStoreConfig(StrictModel):
    """Alert store shared by several alerting workers (distributed mode)."""

    type: Literal["redis"] = Field("redis", description="Redis alert store (distributed mode).")
    url: str = Field(
        "redis://127.0.0.1:6379/0",
        pattern=r"^(rediss?|unix)://",
        description="Redis URL: redis://host:port/db, rediss:// for TLS, or unix:///path/to.sock. "
        "Put credentials in `username`/`password`, not here.",
    )
    key_prefix: str = Field(
        "cw",
        pattern=r"^[^\s*?\[\]{}]+$",
        description="Prefix of every key (`<prefix>:alert:<id>`, ...); stores with different "
        "prefixes share nothing. No spaces or glob characters.",
    )
    event_dedupe_ttl_s: int = Field(
        7 * 24 * 3600,
        ge=60,
        description="How long an applied event id is remembered, so a redelivered event is "
        "ignored; keep it above the bus's redelivery window (e.g. Kafka retention).",
    )
    stream_maxlen: int = Field(
        10_000,
        ge=100,
        description="Approximate length kept of the change streams (all changes, per center); "
        "audit streams are never trimmed.",
    )
    socket_timeout_s: float = Field(
        5.0, gt=0, description="Timeout of connecting to Redis and of each command, in seconds."
    )
    username: str | None = Field(None, description="ACL user name (Redis 6+); null: the default user.")
    password: SecretStr | None = Field(None, description="Password of `username` (or AUTH password).")
    ssl_ca_certs: str | None = Field(
        None, description="CA bundle that signs the server certificate (rediss:// only)."
    )
    ssl_certfile: str | None = Field(None, description="Client certificate for mutual TLS (rediss:// only).")
    ssl_keyfile: str | None = Field(None, description="Key of `ssl_certfile` (rediss:// only).")

    @model_validator(mode="after")
    def _tls_needs_rediss(self) -> Self:
        tls = [n for n in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile") if getattr(self, n) is not None]
        if tls and not self.url.startswith("rediss://"):
            raise ValueError(f"{', '.join(tls)} set, but url is not rediss:// (TLS)")
        return self


StoreConfig = Annotated[MemoryStoreConfig | RedisStoreConfig, Field(discriminator="type")]


class MetricsConfig(StrictModel):
    enabled: bool = Field(True, description="Serve Prometheus metrics over HTTP.")
    host: str = Field("127.0.0.1", description="Address the metrics endpoint listens on.")
    port: int = Field(9464, ge=0, le=65535, description="Port of the metrics endpoint (0 = any).")

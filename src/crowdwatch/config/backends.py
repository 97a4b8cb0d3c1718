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


class KafkaBusConfig(StrictModel):
    """Apache Kafka bus (distributed mode); see crowdwatch.bus.kafka and crowdwatch.bus.spool."""

    type: Literal["kafka"] = Field("kafka", description="Apache Kafka bus (distributed mode).")
    bootstrap_servers: list[str] = Field(
        min_length=1, description="host:port of one or more brokers to bootstrap from (required)."
    )
    client_id: str = Field(
        "crowdwatch", min_length=1, description="Client id shown in broker logs and quotas."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How to talk to the brokers: plain, TLS, SASL, or SASL over TLS."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism (needs a SASL_* security_protocol); null: no SASL."
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(None, description="SASL password.")
    ssl_cafile: str | None = Field(None, description="CA bundle that signs the broker certificates.")
    ssl_certfile: str | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    ssl_keyfile: str | None = Field(None, description="Key of `ssl_certfile` (PEM).")
    ssl_password: SecretStr | None = Field(None, description="Password of an encrypted `ssl_keyfile`.")
    ssl_check_hostname: bool = Field(
        True, description="Check that broker certificates match their host names."
    )
    compression: Literal["lz4", "gzip", "none"] = Field(
        "lz4",
        description="Producer compression. lz4 costs consumers ~1-2 us per record batch to "
        "decode, gzip 12-22 us (small batches are the norm: each camera sends a few events a "
        "second). Consumers read every type, whatever this is set to.",
    )
    linger_ms: int = Field(5, ge=0, le=1000, description="How long the producer waits to batch messages.")
    request_timeout_s: float = Field(
        10.0, gt=0, description="Timeout of one request to a broker, in seconds."
    )
    delivery_timeout_s: float = Field(
        30.0, gt=0, description="How long the producer retries a message before reporting it undelivered."
    )
    max_block_s: float = Field(
        5.0, gt=0, description="How long publishing may block for metadata or buffer space, in seconds."
    )
    replication_factor: int | None = Field(
        None, ge=1, description="Replicas of topics the bus creates; null: min(3, brokers in the cluster)."
    )
    default_partitions: int = Field(
        1, ge=1, description="Partitions of topics created on first use that have no built-in size."
    )
    spool_path: str | None = Field(
        None,
        description="SQLite file that keeps messages while the brokers are unreachable and replays "
        "them in order; null: no spool (a message the broker refuses is an error).",
    )

    @model_validator(mode="after")
    def _sasl_and_tls(self) -> Self:
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and self.sasl_mechanism is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism")
        if self.sasl_mechanism is not None:
            if not sasl:
                raise ValueError(
                    "sasl_mechanism is set, but security_protocol is not SASL_PLAINTEXT/SASL_SSL"
                )
            if self.sasl_username is None or self.sasl_password is None:
                raise ValueError(
                    f"sasl_mechanism {self.sasl_mechanism} needs sasl_username and sasl_password"
                )
        tls = [n for n in ("ssl_cafile", "ssl_certfile", "ssl_keyfile") if getattr(self, n) is not None]
        if tls and not self.security_protocol.endswith("SSL"):
            raise ValueError(f"{', '.join(tls)} set, but security_protocol is not SSL/SASL_SSL")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together")
        return self


BusConfig = Annotated[MemoryBusConfig | KafkaBusConfig, Field(discriminator="type")]


class MemoryStoreConfig(StrictModel):
    type: Literal["memory"] = Field("memory", description="In-process alert store (embedded mode).")
    resolved_retention_s: float | None = Field(
        None,
        gt=0,
        description="How long a resolved alert is kept after it was resolved, or after the last "
        "event folded into it when its episode went on (with its audit entries; the all-alerts "
        "audit keeps that long too). Checked once a minute. null keeps "
        "everything for the life of the process.",
    )
    event_dedupe_ttl_s: int = Field(
        7 * 24 * 3600,
        ge=60,
        description="How long an applied event id is remembered, so a redelivered event is "
        "ignored (a late duplicate is still refused by its alert's last event seq).",
    )


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
        "audit streams are trimmed only by `resolved_retention_s`.",
    )
    resolved_retention_s: float | None = Field(
        None,
        gt=0,
        description="How long a resolved alert stays in Redis after it was resolved (or after "
        "the last event folded into it, when its episode went on): then its "
        "record, index entries and own audit stream are removed, and the all-alerts audit stream "
        "loses entries older than that (by Redis's clock). Checked by the alerting role once a "
        "minute. null keeps everything forever (Redis memory then grows with every alert); "
        "export the audit streams first where a longer record must be kept.",
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

"""Build the configured event bus and alert store (memory for embedded, Kafka and Redis for
distributed deployments). The same code runs on top of either pair."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from crowdwatch.bus.base import EventBus
from crowdwatch.config.backends import BusConfig, StoreConfig
from crowdwatch.store.base import AlertStore


def build_bus(config: BusConfig, registry: CollectorRegistry) -> EventBus:
    if config.type == "memory":
        from crowdwatch.bus.memory import MemoryBus

        return MemoryBus(max_messages_per_topic=config.max_messages_per_topic)
    from crowdwatch.bus.kafka import KafkaBus

    bus = KafkaBus.from_config(config, registry)
    if config.spool_path is None:
        return bus
    from crowdwatch.bus.spool import SpoolingBus

    # The broker may be down when a worker publishes: keep the events on disk, in order.
    return SpoolingBus(bus, config.spool_path, registry=registry)


def build_store(config: StoreConfig) -> AlertStore:
    if config.type == "memory":
        from crowdwatch.store.memory import MemoryAlertStore

        return MemoryAlertStore(
            resolved_retention_s=config.resolved_retention_s, event_dedupe_ttl_s=config.event_dedupe_ttl_s
        )
    from crowdwatch.store.redis import RedisAlertStore

    return RedisAlertStore.from_config(config)

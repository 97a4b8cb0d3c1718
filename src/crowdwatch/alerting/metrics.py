"""Prometheus metrics of the alerting service, created on the registry the caller passes in
(never the global default registry at import time)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from crowdwatch.alerting.batch_histogram import BatchHistogram

# Event time -> stored: from sub-second (embedded) to minutes (a backlog after an outage).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)


@dataclass(frozen=True, slots=True)
class AlertingMetrics:
    events_consumed: Counter  # label type: the CloudEvents type
    alerts_created: Counter
    escalations: Counter  # label outcome: escalated | exhausted
    alerts_purged: Counter
    dlq_messages: Counter  # label reason: decode | schema
    processing_errors: Counter
    processing_latency: BatchHistogram  # observed once per batch

    @classmethod
    def create(cls, registry: CollectorRegistry, namespace: str = "crowdwatch") -> AlertingMetrics:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, namespace=namespace, subsystem="alerting", registry=registry)

        return cls(
            events_consumed=counter("events_consumed", "Valid events taken from the bus.", ("type",)),
            alerts_created=counter("alerts_created", "Alerts opened (one per crowd episode)."),
            escalations=counter(
                "escalations", "Overdue alerts passed up the hierarchy or marked at the top.", ("outcome",)
            ),
            alerts_purged=counter(
                "alerts_purged", "Resolved alerts removed from the store by its retention setting."
            ),
            dlq_messages=counter("dlq_messages", "Messages sent to the dead-letter topic.", ("reason",)),
            processing_errors=counter(
                "processing_errors", "Messages left uncommitted because processing failed (redelivered)."
            ),
            processing_latency=BatchHistogram(
                "processing_latency_seconds",
                "From the event's time to its result in the alert store.",
                namespace=namespace,
                subsystem="alerting",
                registry=registry,
                buckets=LATENCY_BUCKETS,
            ),
        )

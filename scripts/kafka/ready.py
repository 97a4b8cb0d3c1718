"""Readiness probe for scripts/services: waits until the broker at argv[1] really serves
clients — metadata, topic creation (controller), an acks=all produce and a consumer-group
commit (which creates __consumer_offsets) — or until the deadline. Exits 0 when ready, 1 on
timeout, 2 when the process (argv[3]) died. Run with the project's .venv Python (kafka-python)."""

from __future__ import annotations

import logging
import os
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaConfigurationError, KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

TOPIC = "__crowdwatch-ready"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def probe(bootstrap: str) -> None:
    common = {"bootstrap_servers": bootstrap, "request_timeout_ms": 5000, "api_version_auto_timeout_ms": 2000}
    admin = KafkaAdminClient(client_id="crowdwatch-ready", **common)
    try:
        try:
            admin.create_topics([NewTopic(TOPIC, 1, 1)], timeout_ms=5000)
        except TopicAlreadyExistsError:
            pass
    finally:
        admin.close()
    producer = KafkaProducer(acks="all", max_block_ms=5000, **common)
    try:
        producer.send(TOPIC, b"ready").get(timeout=5)
    finally:
        producer.close(timeout=2)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id="__crowdwatch-ready",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=2000,
        request_timeout_ms=7000,
        api_version_auto_timeout_ms=2000,
    )
    try:
        tp = TopicPartition(TOPIC, 0)
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        consumer.commit({tp: OffsetAndMetadata(end, "", -1)})
    finally:
        consumer.close()


def main() -> int:
    bootstrap, timeout, pid = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    logging.basicConfig(level=logging.CRITICAL)  # kafka-python is chatty while the broker boots
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not alive(pid):
            print(f"broker process {pid} exited", file=sys.stderr)
            return 2
        try:
            probe(bootstrap)
            return 0
        except KafkaConfigurationError:
            raise  # a bug in this probe, not a broker that is still booting
        except (KafkaError, OSError, ValueError) as exc:
            last = exc
            time.sleep(0.5)  # readiness polling, not synchronisation between our own threads
    print(f"broker at {bootstrap} not ready after {timeout:.0f} s: {last!r}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

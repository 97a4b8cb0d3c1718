"""KafkaBus beyond the contract: its config, topic creation, partitioning, failure modes."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import CoordinatorNotAvailableError, KafkaTimeoutError
from kafka.future import Future
from prometheus_client import CollectorRegistry
from pydantic import TypeAdapter, ValidationError

from crowdwatch.bus.kafka import DEFAULT_TOPICS, KafkaBus, TopicSpec, connection_options
from crowdwatch.bus.kafka_commits import FINISH_TIMEOUT_MS
from crowdwatch.config.backends import BusConfig, KafkaBusConfig, MemoryBusConfig

from .conftest import drop_topics, kafka_address
from .test_bus_contract import poll_until

# --- config (no broker) ------------------------------------------------------------------


def test_bus_config_picks_kafka_by_type() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(BusConfig)
    assert isinstance(adapter.validate_python({"type": "memory"}), MemoryBusConfig)
    with pytest.raises(ValidationError, match="bootstrap_servers"):
        adapter.validate_python({"type": "kafka"})
    config = adapter.validate_python({"type": "kafka", "bootstrap_servers": ["k1:9092", "k2:9092"]})
    assert isinstance(config, KafkaBusConfig)
    assert connection_options(config) == {
        "bootstrap_servers": ["k1:9092", "k2:9092"],
        "client_id": "crowdwatch",
        "security_protocol": "PLAINTEXT",
    }


def test_sasl_over_tls_options_and_secrets() -> None:
    config = KafkaBusConfig(
        bootstrap_servers=["broker:9093"],
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="worker",
        sasl_password="s3cret",  # pydantic turns it into SecretStr
        ssl_cafile="/etc/ca.pem",
        client_id="worker-7",
    )
    assert "s3cret" not in repr(config)
    options = connection_options(config)
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("worker", "s3cret")
    assert (options["ssl_cafile"], options["ssl_check_hostname"]) == ("/etc/ca.pem", True)
    assert options["client_id"] == "worker-7"
    assert "ssl_certfile" not in options


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"security_protocol": "SASL_SSL"}, "needs sasl_mechanism"),
        ({"sasl_mechanism": "PLAIN", "sasl_username": "u", "sasl_password": "p"}, "is not SASL_"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"}, "needs sasl_username"),
        ({"ssl_cafile": "/ca.pem"}, "is not SSL"),
        ({"security_protocol": "SSL", "ssl_certfile": "/c.pem"}, "go together"),
        ({"compression": "zstd"}, "compression"),
        ({"bootstrap_servers": []}, "bootstrap_servers"),
        ({"brokers": ["x:1"]}, "brokers"),
    ],
    ids=[
        "sasl-without-mechanism",
        "mechanism-without-sasl",
        "no-credentials",
        "tls-file-on-plaintext",
        "cert-without-key",
        "zstd",
        "no-servers",
        "unknown-key",
    ],
)
def test_bad_kafka_configs_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        KafkaBusConfig.model_validate({"bootstrap_servers": ["k:9092"], **options})


def test_from_config_and_bad_arguments() -> None:
    bus = KafkaBus.from_config(KafkaBusConfig(bootstrap_servers=["127.0.0.1:1"], default_partitions=4))
    assert bus.spec_for("anything") == TopicSpec("anything", 4)
    assert bus.spec_for("cameras") == TopicSpec("cameras", 6, compacted=True)
    bus.close()
    with pytest.raises(ValueError, match="bootstrap_servers"):
        KafkaBus({})
    with pytest.raises(ValueError, match="compression"):
        KafkaBus({"bootstrap_servers": "x:1"}, compression="zstd")
    with pytest.raises(ValueError, match="partitions"):
        TopicSpec("t", 0)


# --- no broker at all --------------------------------------------------------------------


def test_unreachable_broker_fails_publish_not_construction() -> None:
    bus = KafkaBus({"bootstrap_servers": "127.0.0.1:1", "api_version_auto_timeout_ms": 500})
    bus.flush(0.1)  # nothing published: nothing to wait for
    with pytest.raises(Exception, match=r"NoBrokersAvailable|[Tt]imeout"):
        bus.publish("t", "cam-1", b"x")
    bus.close()
    bus.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        bus.publish("t", "cam-1", b"x")


# --- real broker -------------------------------------------------------------------------


@pytest.fixture
def admin() -> Any:
    client = KafkaAdminClient(bootstrap_servers=kafka_address())
    yield client
    client.close()


@pytest.fixture
def run(admin: Any) -> Iterator[str]:
    """A unique suffix for the test's topics; they are deleted afterwards."""
    suffix = uuid.uuid4().hex[:8]
    yield suffix
    drop_topics(t for t in admin.list_topics() if t.endswith(f"-{suffix}"))


def partitions_of(admin: Any, topic: str) -> int:
    (described,) = admin.describe_topics([topic])
    return len(described["partitions"])


def topic_config(admin: Any, topic: str) -> dict[str, str]:
    """The topic's settings; polled, since a new topic's config reaches the broker a moment
    after CreateTopics returns."""
    deadline = time.monotonic() + 10.0
    while True:
        (response,) = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        error_code, _, _, _, entries = response.resources[0][:5]
        if error_code == 0 or time.monotonic() > deadline:
            assert error_code == 0, response
            return {e[0]: e[1] for e in entries}


@pytest.mark.kafka
def test_ensure_topics_sizes_and_compacts(admin: Any, run: str) -> None:
    events, cameras = f"events-{run}", f"cameras-{run}"
    with KafkaBus({"bootstrap_servers": kafka_address()}) as bus:
        bus.ensure_topics([TopicSpec(events, 6), TopicSpec(cameras, 6, compacted=True)])
    with KafkaBus({"bootstrap_servers": kafka_address()}) as other:
        other.ensure_topics([TopicSpec(events, 2)])  # exists already: left alone, no error
    assert partitions_of(admin, events) == 6
    assert partitions_of(admin, cameras) == 6
    assert topic_config(admin, cameras)["cleanup.policy"] == "compact"
    assert topic_config(admin, events)["cleanup.policy"] == "delete"


@pytest.mark.kafka
def test_topics_are_created_on_first_use_with_their_sizes(admin: Any, run: str) -> None:
    name = f"crowd-events-{run}"
    topics = {name: TopicSpec(name, DEFAULT_TOPICS["crowd-events"].partitions)}
    with KafkaBus({"bootstrap_servers": kafka_address()}, topics=topics, default_partitions=2) as bus:
        bus.publish(f"crowd-events-{run}", "cam-1", b"x")
        bus.consumer([f"other-{run}"], f"g-{run}").close()
        bus.flush()
    assert partitions_of(admin, f"crowd-events-{run}") == 6
    assert partitions_of(admin, f"other-{run}") == 2


@pytest.mark.kafka
def test_keys_stick_to_partitions_and_spread(run: str) -> None:
    topic = f"keys-{run}"
    with KafkaBus({"bootstrap_servers": kafka_address()}, default_partitions=6) as bus:
        for i in range(60):
            bus.publish(topic, f"cam-{i % 12}", str(i).encode())
        bus.flush()
        consumer = bus.consumer([topic], f"g-{run}")
        got = poll_until(consumer, 60)
        consumer.close()
    assert len(got) == 60
    by_key: dict[str | None, set[int]] = {}
    for m in got:
        by_key.setdefault(m.key, set()).add(m.partition)
    assert all(len(parts) == 1 for parts in by_key.values())
    assert len({p for parts in by_key.values() for p in parts}) > 1


@pytest.mark.kafka
def test_every_compression_is_read_by_one_consumer(run: str) -> None:
    """Producers may differ in their setting (a rolling change of it): consumers read them all."""
    topic = f"codecs-{run}"
    sent: list[bytes] = []
    for codec in ("lz4", "gzip", "none"):
        with KafkaBus({"bootstrap_servers": kafka_address()}, default_partitions=1, compression=codec) as bus:
            for i in range(3):
                sent.append(f'{{"codec": "{codec}", "n": {i}, "pad": "{"x" * 200}"}}'.encode())
                bus.publish(topic, "cam-1", sent[-1])
            bus.flush()
    with KafkaBus({"bootstrap_servers": kafka_address()}) as bus:
        consumer = bus.consumer([topic], f"g-{run}")
        got = poll_until(consumer, len(sent))
        consumer.close()
    assert [m.value for m in got] == sent


@pytest.mark.kafka
def test_a_refused_commit_is_counted(run: str) -> None:
    registry = CollectorRegistry()
    topic = f"counted-{run}"
    with KafkaBus({"bootstrap_servers": kafka_address()}, registry=registry) as bus:
        bus.publish(topic, "cam-1", b"x")
        bus.flush()
        consumer = bus.consumer([topic], f"g-{run}")
        poll_until(consumer, 1)
        nowhere = TopicPartition(f"no-such-topic-{run}", 3)
        consumer.commits.commit({nowhere: 5})  # the broker refuses it: unknown topic
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and not registry.get_sample_value(
            "crowdwatch_bus_commit_failures_total", {"stage": "async"}
        ):
            consumer.poll(0.1)  # replies are handled in poll
        consumer.commits.forget([nowhere])  # else close would try it once more, synchronously
        consumer.close()
    assert registry.get_sample_value("crowdwatch_bus_commit_failures_total", {"stage": "async"}) == 1


@pytest.mark.kafka
def test_rewinding_gives_up_when_the_coordinator_does_not_answer(run: str, monkeypatch: Any) -> None:
    """kafka-python retries a fetch of committed offsets forever while the coordinator is away;
    the rewind after a store failure must raise instead, so the role drops the consumer."""
    topic = f"rewind-{run}"
    with KafkaBus({"bootstrap_servers": kafka_address()}) as bus:
        bus.publish(topic, "cam-1", b"x")
        bus.flush()
        consumer = bus.consumer([topic], f"g-{run}")
        poll_until(consumer, 1)
        coordinator = consumer._consumer._coordinator
        monkeypatch.setattr(
            coordinator,
            "_send_offset_fetch_request",
            lambda partitions: Future().failure(CoordinatorNotAvailableError("simulated outage")),
        )
        outcome: list[BaseException] = []

        def rewind() -> None:
            try:
                consumer.seek_to_committed()
            except BaseException as exc:
                outcome.append(exc)

        worker = threading.Thread(target=rewind, daemon=True)
        worker.start()
        worker.join(FINISH_TIMEOUT_MS / 1000 + 10.0)  # a thread: a regression fails, not hangs
        assert not worker.is_alive()
        assert [type(e) for e in outcome] == [KafkaTimeoutError]
        monkeypatch.undo()
        consumer.close()

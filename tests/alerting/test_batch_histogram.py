"""BatchHistogram reads out exactly as prometheus_client's Histogram fed the same values."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from crowdwatch.alerting.batch_histogram import BatchHistogram
from crowdwatch.alerting.metrics import LATENCY_BUCKETS


def _exposition(registry: CollectorRegistry) -> list[str]:
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "_created" not in line]


@pytest.mark.parametrize(
    "batches",
    [
        [],
        [[]],
        [[0.0]],
        [[0.05, 0.1, 0.25]],  # on the bounds: counted in that bound's bucket
        [[0.049999, 0.050001], [1e9], [3.0, 3.0, 3.0]],  # past the last bound: +Inf only
        [[0.3] * 1000, [12.5, 0.07]],
        [[float("nan"), 0.5]],  # NaN: in the sum, in no bucket
    ],
)
def test_it_reads_as_the_clients_histogram(batches: list[list[float]]) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batch = BatchHistogram("lat_seconds", "Latency.", buckets=LATENCY_BUCKETS, registry=ours)
    reference = Histogram("lat_seconds", "Latency.", buckets=LATENCY_BUCKETS, registry=theirs)
    for values in batches:
        batch.observe_many(iter(values))  # any iterable, read once
        for v in values:
            reference.observe(v)
    assert _exposition(ours) == _exposition(theirs)
    expected = sum(1 for values in batches for v in values if v == v)  # a NaN is not counted
    assert ours.get_sample_value("lat_seconds_count") == expected


def test_one_value_at_a_time_too_and_named_as_the_client_names() -> None:
    registry = CollectorRegistry()
    h = BatchHistogram(
        "x_seconds", "X.", buckets=(1.0, 2.0), registry=registry, namespace="cw", subsystem="a"
    )
    h.observe(1.5)
    assert registry.get_sample_value("cw_a_x_seconds_bucket", {"le": "1.0"}) == 0
    assert registry.get_sample_value("cw_a_x_seconds_bucket", {"le": "2.0"}) == 1
    assert registry.get_sample_value("cw_a_x_seconds_sum") == 1.5


@pytest.mark.parametrize(
    ("buckets", "client_refuses"),
    [
        ((), True),
        ((2.0, 1.0), True),
        ((float("inf"),), True),
        # Accepted by the client, though no histogram can be read from them.
        ((1.0, 1.0), False),
        ((float("nan"),), False),
        ((1.0, float("nan")), False),
    ],
)
def test_bad_buckets_are_refused(buckets: tuple[float, ...], client_refuses: bool) -> None:
    if client_refuses:
        with pytest.raises(ValueError, match=r"sorted order|at least two buckets"):
            Histogram("x_seconds", "X.", buckets=buckets, registry=CollectorRegistry())
    with pytest.raises(ValueError, match="buckets must be increasing numbers"):
        BatchHistogram("x_seconds", "X.", buckets=buckets, registry=CollectorRegistry())


def test_a_name_taken_on_the_registry_is_refused() -> None:
    registry = CollectorRegistry()
    BatchHistogram("x_seconds", "X.", buckets=(1.0,), registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        BatchHistogram("x_seconds", "X.", buckets=(1.0,), registry=registry)

"""A Prometheus histogram observed a batch at a time.

prometheus_client's `Histogram.observe` takes one value (a lock, a walk of the buckets: ~1 us),
and the alerting consumer has one latency per event, thousands a second. `BatchHistogram` sorts
a whole batch into its buckets with `bisect` and takes its lock once. It is exposed as the
client's histogram is (`_bucket` with cumulative `le` counts, `_count`, `_sum`), without the
`_created` sample.
"""

from __future__ import annotations

import itertools
import math
import threading
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Final, cast

from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# How the client writes a bucket's `le` (unannotated there): "0.05", "1.0", "+Inf".
_le: Final = cast(Callable[[float], str], floatToGoString)


class BatchHistogram(Collector):
    """A histogram without labels, registered on `registry`; named as the client names one
    (`namespace_subsystem_name`, empty parts left out)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry,
        namespace: str = "",
        subsystem: str = "",
    ) -> None:
        name = "_".join(part for part in (namespace, subsystem, name) if part)
        bounds = [float(b) for b in buckets]
        if bounds and bounds[-1] != math.inf:
            bounds.append(math.inf)
        # As the client refuses: out of order, repeated, NaN, or only +Inf.
        if len(bounds) < 2 or any(not a < b for a, b in itertools.pairwise(bounds)):
            raise ValueError(f"{name}: buckets must be increasing numbers, got {list(buckets)}")
        self.name, self.documentation = name, documentation
        self._bounds = bounds
        self._counts = [0] * len(bounds)  # per bucket, not cumulative
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe(self, value: float) -> None:
        self.observe_many((value,))

    def observe_many(self, values: Iterable[float]) -> None:
        """Count every value in its bucket (a value equal to a bound is in that bound's); a NaN
        goes into the sum only, as the client does."""
        values = list(values)
        if not values:
            return
        bounds = self._bounds
        found = Counter(bisect_left(bounds, v) for v in values if v == v)  # NaN: in no bucket
        with self._lock:
            for index, n in found.items():
                self._counts[index] += n
            total = self._sum
            for v in values:  # one at a time, as the client adds: the same float sum
                total += v
            self._sum = total

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for bound, n in zip(self._bounds, counts, strict=True):
            running += n
            cumulative.append((_le(bound), running))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=cumulative, sum_value=total)

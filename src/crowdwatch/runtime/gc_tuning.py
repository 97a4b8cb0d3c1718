"""Garbage-collector settings for a running role.

The alerting consumer allocates tens of container objects per event and keeps a large heap
alive (imported modules, routing geometry, the alert cache). With CPython's defaults its young
generation is collected every 700 allocations, a batch's objects are still alive then and get
promoted, and full collections follow that walk the whole heap: 10-12 % of a Kafka -> Redis
drain and ~20 % of the in-memory one (`benchmarks/alerting_throughput.py --gc both`, README).
Freezing what start-up made and collecting the young generation less often brings that to
~4.4 % and ~8.5 %.

Reference cycles are still collected; only the cadence changes.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass

from crowdwatch.config.process import GcConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GcState:
    """What `apply` changed, so that `restore` can put it back (tests, benchmarks)."""

    threshold: tuple[int, int, int]
    froze: bool


def apply(config: GcConfig) -> GcState:
    """Tune the collector as `config` says; call once, after the role has started."""
    before = gc.get_threshold()
    if config.young_threshold is not None:
        gc.set_threshold(config.young_threshold, before[1], before[2])
    if config.freeze_after_start:
        gc.collect()  # leaves only live objects to freeze
        gc.freeze()
    log.debug("gc: thresholds %s, %d objects frozen", gc.get_threshold(), gc.get_freeze_count())
    return GcState(before, config.freeze_after_start)


def restore(state: GcState) -> None:
    """Back to what `apply` found (a command run inside another process, tests)."""
    gc.set_threshold(*state.threshold)
    if state.froze:
        gc.unfreeze()

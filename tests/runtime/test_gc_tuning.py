"""The collector settings a role applies once started (crowdwatch.runtime.gc_tuning)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from crowdwatch.config.process import GcConfig
from crowdwatch.runtime import gc_tuning


@pytest.fixture(autouse=True)
def _interpreter_gc() -> Iterator[None]:
    """Each test starts and ends with the interpreter's own settings."""
    threshold = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_defaults_freeze_the_start_up_heap_and_raise_the_young_threshold() -> None:
    before = gc.get_threshold()
    made_at_start = [object() for _ in range(10)]  # alive, like a role's config and models
    state = gc_tuning.apply(GcConfig())
    assert gc.get_threshold() == (20_000, before[1], before[2])
    assert gc.get_freeze_count() >= len(made_at_start)
    gc_tuning.restore(state)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize(
    ("config", "threshold0", "frozen"),
    [
        (GcConfig(freeze_after_start=False), 20_000, False),
        (GcConfig(young_threshold=None), None, True),
        (GcConfig(freeze_after_start=False, young_threshold=5000), 5000, False),
        (GcConfig(freeze_after_start=False, young_threshold=None), None, False),
    ],
)
def test_each_setting_alone(config: GcConfig, threshold0: int | None, frozen: bool) -> None:
    before = gc.get_threshold()
    state = gc_tuning.apply(config)
    assert gc.get_threshold()[0] == (before[0] if threshold0 is None else threshold0)
    assert (gc.get_freeze_count() > 0) is frozen
    gc_tuning.restore(state)
    assert gc.get_threshold() == before


def test_cycles_are_still_collected_by_themselves_once_tuned() -> None:
    gc_tuning.apply(GcConfig(young_threshold=100))

    class Node:
        def __init__(self) -> None:
            self.other: Node | None = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    assert gone() is not None  # a cycle: reference counting alone never frees it
    kept = [[i] for i in range(5000)]  # allocations that trigger young collections
    assert gone() is None, "the young generation was not collected"
    assert len(kept) == 5000

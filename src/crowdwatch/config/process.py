"""Settings of the process itself, as opposed to what it watches or where it sends events."""

from pydantic import Field

from crowdwatch.config.base import StrictModel


class GcConfig(StrictModel):
    """CPython's cyclic garbage collector, tuned once a role has started (see
    `crowdwatch.runtime.gc_tuning`). The defaults suit a long-running consumer or worker."""

    freeze_after_start: bool = Field(
        True,
        description="After start-up, move every object that exists then (modules, config, routing "
        "geometry, models) out of the collector's sight (`gc.freeze()`): full collections then "
        "walk only what was made since.",
    )
    young_threshold: int | None = Field(
        20_000,
        ge=1,
        description="Allocations between two collections of the youngest generation (CPython's "
        "own default is 700). Larger lets a batch's short-lived objects die by reference counting "
        "before a collection has to look at them; null keeps the interpreter's setting.",
    )

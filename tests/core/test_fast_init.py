"""fast_init: the same class as the dataclass makes, built faster. Each check runs on a pair of
classes defined alike, one with the dataclass's own __init__ and one with fast_init's."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import InitVar, dataclass, field
from typing import Any

import pytest

from crowdwatch.core.alerts import AlertChange
from crowdwatch.core.fast_init import fast_init
from crowdwatch.core.types import Alert, AuditEntry, CameraStatusEvent, CrowdEvent, GeoPoint


def _define(fast: bool) -> type[Any]:
    @dataclass(frozen=True, slots=True)
    class Sample:
        name: str
        size: float
        tags: tuple[str, ...] = field(default_factory=tuple)
        level: int = 3
        label: str = field(init=False, repr=False, compare=False)
        flag: bool = field(init=False, default=False)

        def __post_init__(self) -> None:
            if self.size < 0:
                raise ValueError(f"size {self.size} is negative")
            object.__setattr__(self, "label", f"{self.name}/{self.level}")

    return fast_init(Sample) if fast else Sample


PLAIN, FAST = _define(False), _define(True)


def test_the_init_is_replaced() -> None:
    assert FAST.__init__ is not PLAIN.__init__
    assert FAST.__init__.__qualname__ == PLAIN.__init__.__qualname__


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("a", 1.0), {}),
        (("a", 1.0, ("x",), 7), {}),
        ((), {"name": "a", "size": 2.5, "level": 0}),
        (("a",), {"size": 2.5, "tags": ("y", "z")}),
    ],
)
def test_it_builds_what_the_dataclass_builds(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    plain, fast = PLAIN(*args, **kwargs), FAST(*args, **kwargs)
    values = [getattr(fast, f.name) for f in dataclasses.fields(fast)]
    assert values == [getattr(plain, f.name) for f in dataclasses.fields(plain)]
    assert repr(fast) == repr(plain)
    assert hash(fast) == hash(plain)
    assert fast == FAST(*args, **kwargs)
    assert fast.label == f"{fast.name}/{fast.level}"  # __post_init__ ran
    assert fast.flag is False  # an init=False field's default is set


def test_each_instance_gets_a_new_default_from_its_factory() -> None:
    @fast_init
    @dataclass(frozen=True, slots=True)
    class Box:
        items: list[int] = field(default_factory=list)

    assert Box().items is not Box().items


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        (("a",), {}, TypeError),  # a required argument missing
        (("a", 1.0, (), 1, "extra"), {}, TypeError),  # too many
        (("a", 1.0), {"colour": "red"}, TypeError),  # an unknown keyword
        (("a", 1.0), {"label": "x"}, TypeError),  # an init=False field
        (("a", 1.0), {"name": "b"}, TypeError),  # given twice
        (("a", -1.0), {}, ValueError),  # refused by __post_init__
    ],
)
def test_it_refuses_what_the_dataclass_refuses(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        PLAIN(*args, **kwargs)
    with pytest.raises(error):
        FAST(*args, **kwargs)


def test_instances_stay_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        FAST("a", 1.0).size = 2.0


def test_inspect_shows_the_dataclass_signature() -> None:
    assert str(inspect.signature(FAST)) == str(inspect.signature(PLAIN))
    assert "tags: 'tuple[str, ...]' = <factory>" in str(inspect.signature(FAST))


def test_fields_of_a_dataclass_base_are_set_too() -> None:
    @dataclass(frozen=True, slots=True)
    class Base:
        x: int

    @fast_init
    @dataclass(frozen=True, slots=True)
    class Sub(Base):
        y: int = 0

    assert (Sub(1, 2).x, Sub(1, 2).y) == (1, 2)
    assert Sub(1, 2) == Sub(x=1, y=2)


def test_only_frozen_slotted_dataclasses_are_taken() -> None:
    @dataclass(frozen=True)
    class NoSlots:
        x: int

    @dataclass(slots=True)
    class NotFrozen:
        x: int

    @dataclass(frozen=True, slots=True, kw_only=True)
    class KeywordOnly:
        x: int

    @dataclass(frozen=True, slots=True)
    class WithInitVar:
        x: int
        scale: InitVar[int] = 1

    for cls in (NoSlots, NotFrozen, KeywordOnly, WithInitVar, int):
        with pytest.raises(TypeError, match="fast_init"):
            fast_init(cls)


@pytest.mark.parametrize("cls", [Alert, AuditEntry, CrowdEvent, CameraStatusEvent, GeoPoint, AlertChange])
def test_the_hot_types_keep_their_dataclass_signature(cls: type[Any]) -> None:
    """The parameters the dataclass declares, in order, with the same defaults."""
    params = list(inspect.signature(cls).parameters.values())
    declared = [f for f in dataclasses.fields(cls) if f.init]
    assert [p.name for p in params] == [f.name for f in declared]
    for p, f in zip(params, declared, strict=True):
        if f.default is not dataclasses.MISSING:
            assert p.default == f.default, f.name
        elif f.default_factory is dataclasses.MISSING:
            assert p.default is inspect.Parameter.empty, f.name

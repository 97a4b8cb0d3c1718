"""A faster `__init__` for the frozen, slotted dataclasses built for every event.

`dataclass(frozen=True)` stores each field through `object.__setattr__` (to get past the frozen
`__setattr__`), and keyword arguments cost on top: building an `Alert` (22 fields) took ~4 us,
and the alerting consumer builds one or two per event. `fast_init` swaps in an `__init__` of the
same signature that stores through the slots' own descriptors (~1.5 us). Everything else stays
the dataclass's: eq, hash, repr, the error on assignment, `__post_init__` (called as before).
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from typing import Any, TypeVar

_T = TypeVar("_T")
_FACTORY = object()  # a parameter's default when its field has a default_factory


def fast_init(cls: type[_T]) -> type[_T]:
    """Give `cls`, a frozen dataclass with slots and plain fields, the faster `__init__`."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"fast_init: {cls.__name__} is not a frozen dataclass with slots")
    signature = inspect.signature(cls.__init__)  # the dataclass's, kept for the new one
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    # InitVars are not fields: a signature with other parameters than the init fields is not
    # one this can reproduce.
    if [p for p in signature.parameters if p != "self"] != [f.name for f in fields if f.init]:
        raise TypeError(f"fast_init: {cls.__name__} has init parameters that are not its fields (InitVar)")
    env: dict[str, Any] = {"_FACTORY": _FACTORY}
    args: list[str] = []
    body: list[str] = []
    for f in fields:
        name = f.name
        if f.kw_only or (not f.init and f.default_factory is not dataclasses.MISSING):
            raise TypeError(f"fast_init: {cls.__name__}.{name} is keyword-only or init=False with a factory")
        slot = inspect.getattr_static(cls, name, None)  # on the class or a dataclass base
        if not isinstance(slot, types.MemberDescriptorType):
            raise TypeError(f"fast_init: {cls.__name__}.{name} is not a slot")
        env[f"_set_{name}"] = slot.__set__
        if not f.init:  # set by __post_init__, or to its default as the dataclass does
            if f.default is not dataclasses.MISSING:
                env[f"_default_{name}"] = f.default
                body.append(f"    _set_{name}(self, _default_{name})")
            continue
        if f.default is not dataclasses.MISSING:
            env[f"_default_{name}"] = f.default
            args.append(f"{name}=_default_{name}")
        elif f.default_factory is not dataclasses.MISSING:
            env[f"_factory_{name}"] = f.default_factory
            args.append(f"{name}=_FACTORY")
            body.append(f"    if {name} is _FACTORY: {name} = _factory_{name}()")
        else:
            args.append(name)
        body.append(f"    _set_{name}(self, {name})")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    source = f"def __init__(self, {', '.join(args)}) -> None:\n" + "\n".join(body or ["    pass"]) + "\n"
    exec(source, env)
    init = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    init.__signature__ = signature  # what inspect shows: annotations, `<factory>` defaults
    cls.__init__ = init  # type: ignore[method-assign]
    return cls

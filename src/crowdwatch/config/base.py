"""Base model for every config section: unknown keys are errors, values are immutable, numbers
are finite."""

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


class StrictModel(BaseModel):
    # allow_inf_nan=False: every float of the configuration is finite. YAML reads `.inf` and
    # `.nan` as floats, and neither makes sense anywhere here: an infinite timeout overflows the
    # clocks it is handed to, a NaN polygon point or threshold makes every comparison false.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


class FieldProblemsError(ValueError):
    """Raised by a model validator that finds several problems, each at a field below the model
    (`("zones[1].id", "...")`), so that every problem gets its own line and its own path."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {msg}" if path else msg for path, msg in problems))


def _check_device(value: str) -> str:
    if re.fullmatch(r"auto|cpu|cuda(:\d+)?", value) is None:
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N (N = GPU index), not {value!r}")
    return value


Device = Annotated[str, AfterValidator(_check_device)]
"""Where a model runs: auto (a CUDA GPU when PyTorch sees one, else the CPU), cpu, cuda, cuda:N."""

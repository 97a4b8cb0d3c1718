"""Base model for every config section: unknown keys are errors, values are immutable."""

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class FieldProblemsError(ValueError):
    """Raised by a model validator that finds several problems, each at a field below the model
    (`("zones[1].id", "...")`), so that every problem gets its own line and its own path."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {msg}" if path else msg for path, msg in problems))

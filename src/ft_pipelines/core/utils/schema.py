"""What every parameter schema shares: an unknown key is an error (a misspelt key must not be
dropped silently), values are immutable once validated, and the constrained types used by the
stages. No Kedro here: settings models live beside the code that reads them (core), and
``ft_pipelines.params`` composes them into the session's ``Parameters``."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_serializer
from pydantic_core import PydanticCustomError

# Marks a field that overrides a value decided elsewhere (the plan's epochs, a regulariser
# weight): left at null it is absent from the plain dict, so the consumer's own value applies.
_OVERRIDE = {"override": True}


def override(description: str) -> Any:
    """A field that is absent from ``model_dump()`` unless it is set."""
    return Field(default=None, description=description, json_schema_extra=_OVERRIDE)


class Schema(BaseModel):
    """Base of every parameter block: extra keys forbidden, frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_serializer(mode="wrap")
    def _omit_unset_overrides(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        for name, field in type(self).model_fields.items():
            if field.json_schema_extra == _OVERRIDE and data.get(name) is None:
                data.pop(name, None)
        return data


def invalid(field: str, message: str) -> PydanticCustomError:
    """A cross-field error attached to ``field`` (so the report names its full key)."""
    return PydanticCustomError("invalid_combination", message, {"field": field})


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _check_device(value: str) -> str:
    if not _DEVICE.fullmatch(value):
        raise ValueError(f"must be auto, cpu, cuda or cuda:N (N = GPU index), got {value!r}")
    return value


Seed = Annotated[int, Field(ge=0)]
Count = Annotated[int, Field(ge=1)]             # epochs, batch sizes, images, steps
NonNegativeInt = Annotated[int, Field(ge=0)]
LearningRate = Annotated[float, Field(gt=0)]
Weight = Annotated[float, Field(ge=0)]          # a penalty's strength
Fraction = Annotated[float, Field(ge=0, le=1)]
Device = Annotated[str, AfterValidator(_check_device)]


def check_registered(value: str, registry: dict[str, Any]) -> str:
    """``value`` when it names an entry of ``registry`` (an extension point's names live in its
    registry, so the schema accepts what is registered, toy entries in tests included)."""
    if value not in registry:
        names = [repr(name) for name in registry]
        allowed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        raise ValueError(f"must be one of {allowed}, got {value!r}")
    return value

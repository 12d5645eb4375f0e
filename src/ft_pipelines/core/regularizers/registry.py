"""The regularisers ``finetune.regularizer.name`` may name: one registry entry each (name,
settings model with the only defaults, builder). The parameter schema (``RegularizerSettings``)
accepts exactly the registered names and each one's settings, so a regulariser is one module
plus one ``register_regularizer(...)`` line (docs/architecture.md, "How to add")."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict, ValidationError, field_validator, model_validator
from torch import Tensor, nn

from ft_pipelines.core.regularizers.protocol import PARAMS_PATH, Regularizer
from ft_pipelines.core.utils.registry import Registry
from ft_pipelines.core.utils.schema import Schema, check_registered, invalid, override

#: builder(model being trained, anchor / reference model or None, validated settings,
#: DELTA-style per-layer channel attention or None) -> the regulariser, or None for no penalty
Builder = Callable[[nn.Module, nn.Module | None, Any, Mapping[str, Tensor] | None],
                   Regularizer | None]


class NoSettings(Schema):
    """A regulariser without settings."""


@dataclass(frozen=True)
class RegularizerEntry:
    name: str
    settings: type[Schema]
    build: Builder
    needs_anchor: bool = False      # l2_sp / delta: the pretrained model as anchor or reference
    description: str = ""


REGULARIZERS: Registry[RegularizerEntry] = Registry("finetune.regularizer.name")
register_regularizer = REGULARIZERS.register  # make an entry a value of the regulariser's name
regularizer_entry = REGULARIZERS.entry


def regularizer_keys(name: str) -> frozenset[str]:
    """The settings ``name``'s builder takes (the schema accepts exactly these)."""
    return frozenset(regularizer_entry(name).settings.model_fields)


def validated_settings(name: str, settings: Mapping[str, Any]) -> Schema:
    """``settings`` (without ``name``) as ``name``'s settings model, its defaults filled in."""
    entry = regularizer_entry(name)
    unknown = set(settings) - set(entry.settings.model_fields)
    if unknown:
        raise ValueError(f"Unknown key(s) {sorted(unknown)} in {PARAMS_PATH} for {name!r}; "
                         f"allowed: {sorted(entry.settings.model_fields)}.")
    return entry.settings.model_validate(dict(settings))


class RegularizerSettings(Schema):
    """``finetune.regularizer`` (a plan's too): a registered name and that regulariser's
    settings; unset keys are absent (the plan's value, else the regulariser's default)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str | None = override("a registered regulariser: none | l2 | l2_sp | delta | ...")

    @field_validator("name")
    @classmethod
    def _registered(cls, value: str | None) -> str | None:
        return value if value is None else check_registered(value, REGULARIZERS)

    @model_validator(mode="after")
    def _check_settings(self) -> RegularizerSettings:
        given = {k: v for k, v in (self.model_extra or {}).items() if v is not None}
        if self.name is None:  # the plan names it: any registered regulariser's key may apply
            known = set().union(*(e.settings.model_fields for e in REGULARIZERS.values()))
            for key in sorted(set(given) - known):
                raise invalid(key, f"unknown key; regularisers take: {', '.join(sorted(known))}")
            return self
        allowed = regularizer_entry(self.name).settings.model_fields
        for key in sorted(set(given) - set(allowed)):
            takes = ", ".join(sorted(allowed)) or "no setting"
            raise invalid(key, f"does not apply to regulariser {self.name} (it takes: {takes})")
        try:
            validated_settings(self.name, given)
        except ValidationError as error:
            first = error.errors()[0]
            raise invalid(str(first["loc"][0]), f"{first['msg']}, got {first['input']!r}") \
                from None
        return self


class PlannedRegularizer(RegularizerSettings):
    name: str  # a plan always names its regulariser


register_regularizer(RegularizerEntry("none", NoSettings, lambda *_: None,
                                      description="no penalty"))

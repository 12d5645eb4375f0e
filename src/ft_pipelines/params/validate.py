"""Validate a whole configuration and report every problem at once, each with its full dotted
key, what is allowed, and (for a misspelt key) the key that was probably meant."""

from __future__ import annotations

import difflib
import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from ft_pipelines.params.schema import Parameters

_LIMITS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
           "less_than_equal": "<="}
_LIMIT_KEYS = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt",
               "less_than_equal": "le"}


class ParameterError(ValueError):
    """The configuration does not fit the schema; the message lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"Invalid parameters ({count}). Fix them in conf/ or in --params; "
            f"conf/base/parameters_*.yml lists every key with its default:\n{lines}")


def validate_parameters(raw: dict[str, Any]) -> Parameters:
    """``raw`` (as Kedro merged it, runtime --params included) checked against the schema."""
    try:
        return Parameters.model_validate(raw)
    except ValidationError as error:
        raise ParameterError([describe(e) for e in error.errors()]) from None


def plain_parameters(raw: dict[str, Any]) -> dict[str, Any]:
    """Every key with its default, as plain JSON (Kedro hands typed blocks over as models)."""
    return validate_parameters(raw).model_dump(mode="json")


def _model_at(path: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The schema model found by following ``path`` from the root (None when not a model)."""
    model: type[BaseModel] = Parameters
    for part in path:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        annotation = field.annotation
        if get_origin(annotation) is Union or isinstance(annotation, types.UnionType):
            members = [a for a in get_args(annotation) if isinstance(a, type)
                       and issubclass(a, BaseModel)]
            annotation = members[0] if members else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _dotted(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def _unknown_key(path: tuple[str | int, ...]) -> str:
    parent, key = path[:-1], str(path[-1])
    model = _model_at(parent)
    known = list(model.model_fields) if model else []
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean `{_dotted((*parent, close[0]))}`?"
    where = f"`{_dotted(parent)}`" if parent else "the top level"
    return f"unknown key; {where} takes: {', '.join(known)}"


def describe(error: dict[str, Any]) -> str:
    """One line for one pydantic error: ``key``: what is wrong, what was given."""
    kind, ctx, path = error["type"], error.get("ctx") or {}, tuple(error["loc"])
    if kind == "invalid_combination":
        path = (*path, ctx["field"])
    key = f"`{_dotted(path)}`" if path else "parameters"
    if kind == "extra_forbidden":
        return f"{key}: {_unknown_key(path)}"
    if kind == "missing":
        return f"{key}: required"
    if kind in _LIMITS:
        message = f"must be {_LIMITS[kind]} {_number(ctx[_LIMIT_KEYS[kind]])}"
    elif kind == "literal_error":
        message = f"must be one of {ctx['expected']}"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        message = "must be a mapping of keys"
    elif kind in ("value_error", "invalid_combination"):
        return f"{key}: {error['msg'].removeprefix('Value error, ')}"
    else:
        message = error["msg"].replace("Input should be", "must be")
    return f"{key}: {message}, got {error['input']!r}"

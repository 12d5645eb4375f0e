"""What a run's data becomes in MLflow: flat parameters, metrics and per-epoch step metrics.

Pure functions, no MLflow calls: the hook sends what they return.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from numbers import Real
from typing import Any

import pandas as pd
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

# MLflow accepts letters, digits, _ - . / space and colon in keys; anything else becomes "_".
_KEY_CHARACTERS = re.compile(r"[^\w\-./ :]")
EPOCH_COLUMN = "epoch"


def clean_key(key: str) -> str:
    return _KEY_CHARACTERS.sub("_", key)


def flatten(tree: Mapping[str, Any], prefix: str = "", max_depth: int | None = None
            ) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``, as kedro-mlflow flattens parameters.

    Dicts deeper than ``max_depth`` levels are dropped (not kept whole); lists stay values.
    """
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            if max_depth is None or max_depth > 1:
                flat.update(flatten(value, name, None if max_depth is None else max_depth - 1))
        else:
            flat[name] = value
    return flat


def as_params(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Every leaf as an MLflow parameter: text, cut at MLflow's length limit."""
    return {clean_key(key): str(value)[:MAX_PARAM_VAL_LENGTH]
            for key, value in flatten(tree, prefix).items()}


def is_number(value: Any) -> bool:
    """A finite real number (bools are flags, not metrics)."""
    return (isinstance(value, Real) and not isinstance(value, bool)
            and math.isfinite(float(value)))


def as_metrics(tree: Mapping[str, Any], prefix: str = "", max_depth: int = 2
               ) -> dict[str, float]:
    """The numbers of a JSON record, e.g. ``{"pruned": {"top1": 0.9}}`` -> ``pruned.top1``.

    ``max_depth`` keeps model-level numbers and leaves out per-class breakdowns.
    """
    return {clean_key(key): float(value)
            for key, value in flatten(tree, prefix, max_depth).items() if is_number(value)}


def curve_metrics(history: pd.DataFrame, prefix: str) -> list[tuple[str, float, int]]:
    """A per-epoch table as ``(key, value, step)``: every numeric column, step = epoch."""
    if EPOCH_COLUMN not in history.columns:
        raise ValueError(f"a curve table needs an {EPOCH_COLUMN!r} column; it has "
                         f"{list(history.columns)}")
    points = []
    numeric = history.select_dtypes("number").columns.drop(EPOCH_COLUMN)
    for record in history.to_dict("records"):
        step = int(record[EPOCH_COLUMN])
        points += [(clean_key(f"{prefix}/{column}"), float(record[column]), step)
                   for column in numeric if is_number(record[column])]
    return points


def run_tags(params: Mapping[str, Any]) -> dict[str, str]:
    """Tags to find runs by: data source and backbone (kedro-mlflow adds env, run_id, ...)."""
    ingestion = params.get("ingestion") or {}
    backbone = params.get("backbone") or {}
    source = str(ingestion.get("source"))
    if ingestion.get("path"):
        source += f":{ingestion['path']}"
    return {"data_source": source,
            "backbone": f"{backbone.get('architecture')} ({backbone.get('source')})"}

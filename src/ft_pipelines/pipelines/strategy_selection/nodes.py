"""Thin node: size x similarity -> the fine-tuning plan."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ft_pipelines.core.strategy import select_strategy


def plan_finetuning(dataset_profile: dict, similarity_metrics: dict,
                    layer_divergence: pd.DataFrame, strategy: dict[str, Any]) -> dict:
    return select_strategy(dataset_profile, similarity_metrics, layer_divergence,
                           similarity_metrics["blocks"], strategy)

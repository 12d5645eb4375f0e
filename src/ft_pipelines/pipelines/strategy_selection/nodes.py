"""Thin node: size x similarity -> the fine-tuning plan."""

from __future__ import annotations

import pandas as pd

from ft_pipelines.core.strategy import select_strategy
from ft_pipelines.params import FinetuneParams, StrategyParams


def plan_finetuning(dataset_profile: dict, similarity_metrics: dict,
                    layer_divergence: pd.DataFrame, strategy: StrategyParams,
                    finetune: FinetuneParams) -> dict:
    return select_strategy(dataset_profile, similarity_metrics, layer_divergence,
                           similarity_metrics["blocks"], strategy.model_dump(),
                           batch_size=finetune.batch_size)

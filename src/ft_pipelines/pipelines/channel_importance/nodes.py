"""Thin node: TransTailor's target-aware channel importance of the fine-tuned model."""

from __future__ import annotations

import copy

import pandas as pd
from matplotlib.figure import Figure
from torch import nn

from ft_pipelines.core.data import split_image_data, stratified_subset
from ft_pipelines.core.evaluation import importance_distribution_figure
from ft_pipelines.core.models import record_sources
from ft_pipelines.core.pruning import score_channels
from ft_pipelines.params import ImportanceParams, RuntimeParams


def compute_channel_importance(finetuned_model: nn.Module, images: pd.DataFrame,
                               importance: ImportanceParams, decode_cache_dir: str | None,
                               runtime: RuntimeParams) -> tuple[pd.DataFrame, Figure]:
    size = finetuned_model.backbone_cfg.input_size
    train = split_image_data(images, size, decode_cache_dir)["train"]
    train = stratified_subset(train, importance.max_images, importance.seed)
    # a copy: gates hook into the modules, and the loaded model may be shared with other nodes
    table = score_channels(copy.deepcopy(finetuned_model), train, "taylor_gate",
                           importance, runtime)
    # the table says which model and data it scores, so pruning can refuse it with others
    record_sources(table, finetuned_model=finetuned_model, images=images)
    return table, importance_distribution_figure(table)

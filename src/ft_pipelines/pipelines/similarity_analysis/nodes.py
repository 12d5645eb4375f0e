"""Thin nodes: load the backbone, measure how far the target data is from its source."""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from torch import nn

from ft_pipelines.core.analysis import similarity_report, split_image_data, stratified_subset
from ft_pipelines.core.backbones import create_backbone
from ft_pipelines.core.plots import layer_divergence_figure


def load_backbone(backbone: dict[str, Any]) -> nn.Module:
    """The pretrained network every later stage starts from (saved as ``pretrained_model``)."""
    return create_backbone(backbone.get("source", "bundled"), backbone.get("architecture"),
                           backbone.get("weights"), backbone.get("path"),
                           int(backbone.get("input_size", 96)), backbone.get("library", "auto"))


def analyse_similarity(pretrained_model: nn.Module, images: pd.DataFrame,
                       similarity: dict[str, Any], ingestion: dict[str, Any]
                       ) -> tuple[dict, pd.DataFrame, Figure]:
    """Similarity signals on (a stratified subset of) the training split."""
    data = split_image_data(images, pretrained_model.backbone_cfg.input_size,
                            ingestion.get("decode_cache_dir"))["train"]
    data = stratified_subset(data, similarity.get("max_images"), int(similarity.get("seed", 0)))
    metrics, layers = similarity_report(pretrained_model, data, similarity)
    return metrics, layers, layer_divergence_figure(layers)

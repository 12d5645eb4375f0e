"""Thin nodes: load the backbone, measure how far the target data is from its source."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from torch import nn

from ft_pipelines.core.analysis import similarity_report, split_image_data, stratified_subset
from ft_pipelines.core.backbones import create_backbone
from ft_pipelines.core.plots import layer_divergence_figure
from ft_pipelines.params import BackboneParams, IngestionParams, SimilarityParams


def load_backbone(backbone: BackboneParams) -> nn.Module:
    """The pretrained network every later stage starts from (saved as ``pretrained_model``)."""
    return create_backbone(backbone.source, backbone.architecture, backbone.weights,
                           backbone.path, backbone.input_size, backbone.library)


def analyse_similarity(pretrained_model: nn.Module, images: pd.DataFrame,
                       similarity: SimilarityParams, ingestion: IngestionParams
                       ) -> tuple[dict, pd.DataFrame, Figure]:
    """Similarity signals on (a stratified subset of) the training split."""
    data = split_image_data(images, pretrained_model.backbone_cfg.input_size,
                            ingestion.decode_cache_dir)["train"]
    data = stratified_subset(data, similarity.max_images, similarity.seed)
    metrics, layers = similarity_report(pretrained_model, data, similarity.model_dump())
    return metrics, layers, layer_divergence_figure(layers)

"""Thin node: measure how far the target data is from the backbone's source."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from torch import nn

from ft_pipelines.core.data import split_subset
from ft_pipelines.core.evaluation import layer_divergence_figure
from ft_pipelines.core.similarity import similarity_report
from ft_pipelines.params import RuntimeParams, SimilarityParams


def analyse_similarity(pretrained_model: nn.Module, images: pd.DataFrame,
                       similarity: SimilarityParams, decode_cache_dir: str | None,
                       runtime: RuntimeParams) -> tuple[dict, pd.DataFrame, Figure]:
    """Similarity signals on (a stratified subset of) the training split, decoded at the
    analysis size (so the verdict does not change with backbone.input_size); only the
    subset is decoded. The forward passes run on ``runtime.device``."""
    size = similarity.analysis_size or pretrained_model.backbone_cfg.input_size
    data = split_subset(images, "train", size, decode_cache_dir, similarity.max_images,
                        similarity.seed)
    metrics, layers = similarity_report(pretrained_model, data, similarity, runtime.device)
    return metrics, layers, layer_divergence_figure(layers)

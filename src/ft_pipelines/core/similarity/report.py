"""The similarity report: every signal of the target data w.r.t. the backbone's source."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from ft_pipelines.core.data import ImageData, load_reference_images
from ft_pipelines.core.similarity.bn_statistics import aggregate_divergence, bn_divergence
from ft_pipelines.core.similarity.domain import (
    emd_domain_similarity,
    frechet_distance,
    mmd_rbf,
    proxy_a_distance,
)
from ft_pipelines.core.similarity.features import Features, extract_features
from ft_pipelines.core.similarity.resolution import analysis_images
from ft_pipelines.core.similarity.settings import SimilarityParams
from ft_pipelines.core.similarity.transferability import h_score, leep, logme, nce

logger = logging.getLogger(__name__)


def reference_signals(target: Features, target_labels: np.ndarray, reference: Features,
                      reference_labels: np.ndarray, gamma: float) -> dict[str, float]:
    """Distances between target and a source sample on penultimate features."""
    a, b = reference.penultimate, target.penultimate
    return {
        "frechet_distance": frechet_distance(a, b),
        "mmd_rbf": mmd_rbf(a, b),
        "emd_domain_similarity": emd_domain_similarity(
            a, reference_labels, b, target_labels, gamma=gamma),
        "proxy_a_distance": proxy_a_distance(a, b),
    }


def similarity_report(model: nn.Module, data: ImageData,
                      settings: SimilarityParams | dict[str, Any], device: str | None = None
                      ) -> tuple[dict[str, Any], pd.DataFrame]:
    """All similarity signals of ``data`` w.r.t. the backbone's pretraining source.

    Every signal is measured at ``settings.analysis_size`` (images resized first; ``None``: the
    size they come in), so the verdict does not depend on ``backbone.input_size``; the forward
    passes run on ``device`` (``runtime.device``; None: where the model is).
    """
    settings = SimilarityParams.model_validate(settings) if isinstance(settings, dict) \
        else settings
    images = analysis_images(data.images, settings.analysis_size)
    features = extract_features(model, images, settings.batch_size, device=device)
    labels = data.labels.numpy()
    layers = bn_divergence(model, features.bn_stats)
    cfg = model.backbone_cfg
    metrics: dict[str, Any] = {
        "backbone": f"{cfg.library}:{cfg.architecture} ({cfg.source})",
        "input_size": cfg.input_size, "analysis_size": int(images.shape[-1]),
        "images_used": len(data),
        "bn_divergence": aggregate_divergence(layers),
        "bn_divergence_mean": float(layers["divergence"].mean()),
        "logme": logme(features.penultimate, labels),
        "h_score": h_score(features.penultimate, labels),
        "blocks": list(cfg.layout.blocks),
    }
    if cfg.source != "none":  # a random head says nothing about the source task
        metrics["leep"] = leep(features.source_probs, labels)
        metrics["nce"] = nce(features.source_probs, labels)
    folder = settings.source_reference
    if folder:
        ref_images, ref_labels = load_reference_images(folder, int(images.shape[-1]))
        reference = extract_features(model, ref_images, record_bn=False, device=device)
        metrics.update(reference_signals(features, labels, reference, ref_labels,
                                         settings.emd_gamma))
    logger.info("Similarity: BN divergence %.3f, LogME %.3f", metrics["bn_divergence"],
                metrics["logme"])
    return metrics, layers

"""Backbone ranking: which pretrained network's frozen features fit the target labels best.

LogME (You et al. 2021) and H-score (Bao et al. 2019) of each candidate's penultimate features
on the training split, next to its cost; the best LogME wins, ties (equal to 3 decimals) go to
the cheaper network (fewer MACs)."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import torch
from torch import nn

from ft_pipelines.core.data import ImageData
from ft_pipelines.core.similarity.features import extract_features
from ft_pipelines.core.similarity.transferability import h_score, logme
from ft_pipelines.core.utils import count_macs_params

logger = logging.getLogger(__name__)

RANKING_COLUMNS = ["candidate", "logme", "h_score", "params", "macs", "latency_ms", "chosen"]


def score_backbone(model: nn.Module, data: ImageData, batch_size: int = 128,
                   device: str | None = None) -> dict[str, Any]:
    """LogME, H-score, parameters and MACs of one candidate on ``data``; the features are
    computed on ``device`` (``runtime.device``; None: where the model is)."""
    features = extract_features(model, data.images, batch_size, record_bn=False,
                                progress=False, device=device)
    labels = data.labels.numpy()
    size = int(data.images.shape[-1])
    macs, params = count_macs_params(model, torch.zeros(1, 3, size, size))
    return {"logme": logme(features.penultimate, labels),
            "h_score": h_score(features.penultimate, labels), "params": params, "macs": macs}


def choose_backbone(table: pd.DataFrame) -> pd.DataFrame:
    """Mark the best LogME (ties to 3 decimals: fewer MACs) as ``chosen``; best first."""
    ranked = table.assign(_score=table["logme"].round(3)).sort_values(
        ["_score", "macs"], ascending=[False, True], kind="stable").drop(columns="_score")
    ranked["chosen"] = False
    ranked.iloc[0, ranked.columns.get_loc("chosen")] = True
    logger.info("Backbone ranking: %s", ranked[["candidate", "logme", "macs"]].to_dict("records"))
    return ranked.reset_index(drop=True)

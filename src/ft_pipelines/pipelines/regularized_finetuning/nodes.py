"""Thin nodes: DELTA attention (when planned), fine-tuning, learning curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from torch import nn

from ft_pipelines.core.analysis import split_image_data, stratified_subset
from ft_pipelines.core.finetune import (
    ATTENTION_COLUMNS,
    delta_attention,
    finetune_model,
    resolve_regularizer,
    run_fingerprint,
)
from ft_pipelines.core.images import decode_cache_key
from ft_pipelines.core.plots import learning_curves


def compute_delta_attention(surgered_model: nn.Module, images: pd.DataFrame, finetune_plan: dict,
                            finetune: dict[str, Any], ingestion: dict[str, Any]) -> pd.DataFrame:
    """DELTA's per-channel weights; an empty table when the regulariser is not DELTA."""
    if resolve_regularizer(finetune_plan, finetune.get("regularizer"))["name"] != "delta":
        return pd.DataFrame(columns=ATTENTION_COLUMNS)
    size = surgered_model.backbone_cfg.input_size
    train = split_image_data(images, size, ingestion.get("decode_cache_dir"))["train"]
    probe_data = stratified_subset(train, finetune.get("delta_probe_images"),
                                   int(finetune.get("seed", 0)))
    return delta_attention(surgered_model, probe_data, int(finetune.get("seed", 0)))


def finetune(surgered_model: nn.Module, images: pd.DataFrame, finetune_plan: dict,
             delta_attention: pd.DataFrame, finetune: dict[str, Any], ingestion: dict[str, Any]
             ) -> tuple[nn.Module, pd.DataFrame, Figure]:
    """Train the surgered model with the plan's regulariser; resumes an interrupted run."""
    size = surgered_model.backbone_cfg.input_size
    splits = split_image_data(images, size, ingestion.get("decode_cache_dir"))
    checkpoint_dir = None
    if finetune.get("resume", True):
        key = run_fingerprint(surgered_model, decode_cache_key(images, size), finetune_plan,
                              finetune)
        checkpoint_dir = Path(finetune["checkpoint_dir"]) / f"finetune-{key}"
    model, history = finetune_model(surgered_model, splits, finetune_plan, finetune,
                                    delta_attention, checkpoint_dir)
    return model, history, learning_curves(history)

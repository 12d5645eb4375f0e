"""Thin nodes: DELTA attention (when planned), fine-tuning, learning curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from torch import nn

from ft_pipelines.core.data import decode_cache_key, split_image_data, stratified_subset
from ft_pipelines.core.evaluation import learning_curves
from ft_pipelines.core.regularizers import ATTENTION_COLUMNS, delta_attention
from ft_pipelines.core.training import finetune_model, resolve_regularizer
from ft_pipelines.core.utils import run_fingerprint


def compute_delta_attention(surgered_model: nn.Module, images: pd.DataFrame, finetune_plan: dict,
                            finetune: dict[str, Any], decode_cache_dir: str | None
                            ) -> pd.DataFrame:
    """DELTA's per-channel weights; an empty table when the regulariser is not DELTA."""
    if resolve_regularizer(finetune_plan, finetune.get("regularizer"))["name"] != "delta":
        return pd.DataFrame(columns=ATTENTION_COLUMNS)
    size = surgered_model.backbone_cfg.input_size
    train = split_image_data(images, size, decode_cache_dir)["train"]
    probe_data = stratified_subset(train, finetune.get("delta_probe_images"),
                                   int(finetune.get("seed", 0)))
    return delta_attention(surgered_model, probe_data, int(finetune.get("seed", 0)))


def finetune(surgered_model: nn.Module, images: pd.DataFrame, finetune_plan: dict,
             delta_attention: pd.DataFrame, finetune: dict[str, Any], decode_cache_dir: str | None
             ) -> tuple[nn.Module, pd.DataFrame, Figure]:
    """Train the surgered model with the plan's regulariser; resumes an interrupted run."""
    size = surgered_model.backbone_cfg.input_size
    splits = split_image_data(images, size, decode_cache_dir)
    checkpoint_dir = None
    if finetune.get("resume", True):
        key = run_fingerprint(surgered_model, decode_cache_key(images, size), finetune_plan,
                              finetune)
        checkpoint_dir = Path(finetune["checkpoint_dir"]) / f"finetune-{key}"
    model, history = finetune_model(surgered_model, splits, finetune_plan, finetune,
                                    delta_attention, checkpoint_dir)
    return model, history, learning_curves(history)

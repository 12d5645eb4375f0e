"""Thin nodes: DELTA attention (when planned), fine-tuning, learning curves."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from torch import nn

from ft_pipelines.core.data import decode_cache_key, split_image_data, stratified_subset
from ft_pipelines.core.evaluation import learning_curves
from ft_pipelines.core.models import record_sources, record_training_data
from ft_pipelines.core.regularizers import (
    ATTENTION_COLUMNS,
    check_delta_can_train,
    delta_attention,
)
from ft_pipelines.core.strategy import apply_recipe, lr_find_plot
from ft_pipelines.core.training import finetune_model, resolve_regularizer
from ft_pipelines.core.utils import resolve_runtime, run_fingerprint
from ft_pipelines.params import FinetuneParams, RuntimeParams


def compute_delta_attention(surgered_model: nn.Module, images: pd.DataFrame, finetune_plan: dict,
                            finetune: FinetuneParams, decode_cache_dir: str | None,
                            runtime: RuntimeParams) -> pd.DataFrame:
    """DELTA's per-channel weights (an empty table when the regulariser is not DELTA), stamped
    with the model and data they were computed for."""
    regularizer = resolve_regularizer(finetune_plan, finetune.regularizer.model_dump())
    check_delta_can_train(surgered_model, regularizer)
    table = (_delta_attention(surgered_model, images, finetune, decode_cache_dir, runtime)
             if regularizer["name"] == "delta" else pd.DataFrame(columns=ATTENTION_COLUMNS))
    return record_sources(table, surgered_model=surgered_model, images=images)


def _delta_attention(surgered_model: nn.Module, images: pd.DataFrame, finetune: FinetuneParams,
                     decode_cache_dir: str | None, runtime: RuntimeParams) -> pd.DataFrame:
    size = surgered_model.backbone_cfg.input_size
    train = split_image_data(images, size, decode_cache_dir)["train"]
    probe_data = stratified_subset(train, finetune.delta_probe_images, finetune.seed)
    # a copy on runtime.device: the probes and channel-drop passes run where the model is
    model = copy.deepcopy(surgered_model).to(resolve_runtime(runtime).device)
    return delta_attention(model, probe_data, finetune.seed)


def finetune(surgered_model: nn.Module, images: pd.DataFrame, finetune_plan: dict,
             delta_attention: pd.DataFrame, finetune: FinetuneParams, decode_cache_dir: str | None,
             runtime: RuntimeParams) -> tuple[nn.Module, pd.DataFrame, Figure, Figure]:
    """Train the surgered model with the plan's regulariser and recipe (``plan["recipe"]``,
    where the user's finetune.* values already won); resumes an interrupted run. Outputs the
    model, its history, the learning curves and the LR range test's curve."""
    size = surgered_model.backbone_cfg.input_size
    splits = split_image_data(images, size, decode_cache_dir)
    settings = apply_recipe(finetune.model_dump(), finetune_plan.get("recipe"))
    checkpoint_dir = None
    if finetune.resume:
        key = run_fingerprint(surgered_model, decode_cache_key(images, size), finetune_plan,
                              finetune.model_dump(), {"delta_attention": delta_attention})
        checkpoint_dir = Path(finetune.checkpoint_dir) / f"finetune-{key}"
    model, history = finetune_model(surgered_model, splits, finetune_plan, settings,
                                    delta_attention, checkpoint_dir, runtime)
    lr_plot = lr_find_plot(history.attrs.get("lr_finding"),
                           (finetune_plan.get("recipe") or {}).get("lr_find"))
    return record_training_data(model, images), history, learning_curves(history), lr_plot

"""Thin nodes: prune by the chosen importance, recover, importance-aware fine-tuning."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from torch import nn

from ft_pipelines.core.data import decode_cache_key, split_image_data
from ft_pipelines.core.evaluation import learning_curves
from ft_pipelines.core.models import record_training_data
from ft_pipelines.core.pruning import (
    frontier_figure,
    input_sizes,
    prune_and_finetune,
    score_channels,
)
from ft_pipelines.core.utils import run_fingerprint
from ft_pipelines.params import FinetuneParams, ImportanceParams, PruningParams, RuntimeParams


def prune(finetuned_model: nn.Module, channel_importance: pd.DataFrame, images: pd.DataFrame,
          pruning: PruningParams, finetune: FinetuneParams, decode_cache_dir: str | None,
          runtime: RuntimeParams) -> tuple[nn.Module, dict, pd.DataFrame, Figure, Figure]:
    size = finetuned_model.backbone_cfg.input_size
    splits = split_image_data(images, size, decode_cache_dir)
    # the baselines are scored here, seeded by pruning.seed; taylor_gate has its own stage
    table = (channel_importance if pruning.importance == "taylor_gate"
             else score_channels(finetuned_model, splits["train"], pruning.importance,
                                 ImportanceParams(seed=pruning.seed), runtime))
    checkpoint_dir = None
    if finetune.resume:
        key = run_fingerprint(finetuned_model, decode_cache_key(images, size), {},
                              pruning.model_dump(), {"importance": table})
        checkpoint_dir = Path(finetune.checkpoint_dir) / f"prune-{key}"
    # the search's smaller inputs train and are judged on the images decoded at that size, as
    # the evaluation, the export and predict decode them for the shipped model
    sizes = input_sizes(size, pruning.input_scales) if pruning.ratio == "auto" else []
    by_size = {s: split_image_data(images, s, decode_cache_dir) for s in sizes}
    model, summary, history = prune_and_finetune(finetuned_model, table, splits, pruning,
                                                 checkpoint_dir, runtime, by_size)
    return (record_training_data(model, images), summary, history, learning_curves(history),
            frontier_figure(summary.get("steps") or []))

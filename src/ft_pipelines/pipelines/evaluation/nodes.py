"""Thin nodes: score every model on the test split and write the report."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from torch import nn

from ft_pipelines.core.data import split_image_data
from ft_pipelines.core.evaluation import evaluate_models, render_report
from ft_pipelines.params import EvaluationParams, RuntimeParams


def evaluate(pretrained_model: nn.Module, finetuned_model: nn.Module, pruned_model: nn.Module,
             images: pd.DataFrame, class_names: list[str], evaluation: EvaluationParams,
             decode_cache_dir: str | None, runtime: RuntimeParams
             ) -> tuple[dict, pd.DataFrame, dict[str, Figure]]:
    size = finetuned_model.backbone_cfg.input_size
    splits = split_image_data(images, size, decode_cache_dir)
    models = {"linear_probe": pretrained_model, "finetuned": finetuned_model,
              "pruned": pruned_model}
    settings = {**evaluation.model_dump(), "device": runtime.device,
                "precision": runtime.precision}
    return evaluate_models(models, splits, class_names, settings)


def write_report(finetune_plan: dict, evaluation_metrics: dict, pruning_summary: dict,
                 dataset_profile: dict) -> str:
    return render_report(finetune_plan, evaluation_metrics, pruning_summary, dataset_profile)

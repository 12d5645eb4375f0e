"""Thin nodes: score every model on the test split and write the report."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from torch import nn

from ft_pipelines.core.data import split_image_data
from ft_pipelines.core.evaluation import (
    comparison_table,
    evaluate_models,
    flag_rejected_pruning,
    render_report,
)
from ft_pipelines.core.models import check_model_fits_data
from ft_pipelines.params import EvaluationParams


def evaluate(pretrained_model: nn.Module, finetuned_model: nn.Module, pruned_model: nn.Module,
             pruning_summary: dict, images: pd.DataFrame, class_names: list[str],
             evaluation: EvaluationParams, decode_cache_dir: str | None
             ) -> tuple[dict, pd.DataFrame, dict[str, Figure]]:
    for name, model in (("finetuned_model", finetuned_model), ("pruned_model", pruned_model)):
        check_model_fits_data(model, images, class_names, model_name=name)
    size = finetuned_model.backbone_cfg.input_size
    splits = split_image_data(images, size, decode_cache_dir)
    models = {"linear_probe": pretrained_model, "finetuned": finetuned_model,
              "pruned": pruned_model}
    results, _, figures = evaluate_models(models, splits, class_names, evaluation.model_dump())
    flag_rejected_pruning(results, pruning_summary)
    return results, comparison_table(results), figures


def write_report(finetune_plan: dict, evaluation_metrics: dict, pruning_summary: dict,
                 dataset_profile: dict) -> str:
    return render_report(finetune_plan, evaluation_metrics, pruning_summary, dataset_profile)

"""Thin nodes: score every model on the test split and write the report."""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from torch import nn

from ft_pipelines.core.data import split_image_data
from ft_pipelines.core.evaluation import (
    comparison_table,
    evaluate_models,
    flag_rejected_pruning,
    mark_not_recommended,
    render_report,
)
from ft_pipelines.core.export import EXPORT_KINDS, OnnxModel, score_onnx
from ft_pipelines.params import EvaluationParams, RuntimeParams


def evaluate(pretrained_model: nn.Module, finetuned_model: nn.Module, pruned_model: nn.Module,
             pruning_summary: dict, export_report: dict[str, Any], images: pd.DataFrame,
             class_names: list[str], evaluation: EvaluationParams, decode_cache_dir: str | None,
             runtime: RuntimeParams, **exported_models: OnnxModel | None
             ) -> tuple[dict, pd.DataFrame, dict[str, Figure]]:
    """PyTorch rows, a row per exported model kind (onnxruntime, same threads) and baselines.

    ``exported_models``: every registered kind by name; an optional one never made is None."""
    models = {"linear_probe": pretrained_model, "finetuned": finetuned_model,
              "pruned": pruned_model}
    onnx = {name: model for name, model in exported_models.items()
            if isinstance(model, OnnxModel)}
    # each model is scored on the images decoded at its own input size (the pruning search
    # may have shrunk it), as predict decodes them for it
    sizes = {m.backbone_cfg.input_size for m in models.values()} | {
        m.input_size for m in onnx.values()}
    by_size = {s: split_image_data(images, s, decode_cache_dir) for s in sorted(sizes)}
    exported = {name: score_onnx(model, by_size[model.input_size]["test"], class_names,
                                 evaluation.throughput_batch) for name, model in onnx.items()}
    results, _, figures = evaluate_models(models, by_size[finetuned_model.backbone_cfg.input_size],
                                          class_names, evaluation, runtime, exported, by_size)
    checks = export_report.get("models") or {}
    for name in exported:
        if (checks.get(name) or {}).get("recommended") is False:
            mark_not_recommended(results, name, checks[name]["reason"])
    pruned_rows = ("pruned", *(kind.name for kind in EXPORT_KINDS.values() if kind.pruned))
    flag_rejected_pruning(results, pruning_summary, rows=pruned_rows)
    return results, comparison_table(results), figures


def write_report(finetune_plan: dict, evaluation_metrics: dict | None, pruning_summary: dict,
                 dataset_profile: dict, export_report: dict | None = None) -> str:
    if evaluation_metrics is None:  # the catalog loads None while none was ever saved
        raise ValueError("No evaluation_metrics saved yet: run `kedro run --pipelines=evaluation`"
                         " (the report is written from it)")
    return render_report(finetune_plan, evaluation_metrics, pruning_summary, dataset_profile,
                         export_report)

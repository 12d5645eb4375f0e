"""Thin node: label new images with an exported model (no training data, no PyTorch model)."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from ft_pipelines.core.export import (
    CPU,
    OnnxModel,
    OnnxRunner,
    always_exported,
    evaluated_recommendation,
    iter_inputs,
    predict_rows,
    predictions_table,
    provenance_warning,
    resolve_model_choice,
)
from ft_pipelines.params import MlflowParams, PredictParams
from ft_pipelines.tracking.registry import load_registered

logger = logging.getLogger(__name__)
DEFAULT_MLFLOW = MlflowParams()  # frozen: safe to share as a default


def predict_images(export_report: dict[str, Any], predict: PredictParams,
                   evaluation_metrics: dict[str, Any] | None = None,
                   mlflow: MlflowParams = DEFAULT_MLFLOW,
                   finetune_plan: dict[str, Any] | None = None,
                   **exported_models: OnnxModel | None) -> pd.DataFrame:
    """One row per file under ``predict.path`` with the chosen model's top-1 and top-5.

    ``exported_models``: every registered exported kind by name (None: never made).
    ``predict.model: auto`` ships what the evaluation recommends among the exported models
    (ranked by macro-F1 when ``finetune_plan`` found the data imbalanced, as the report does;
    ``None`` here when no evaluation was ever saved: then the export report's choice);
    ``registry`` labels with a version of the MLflow registered model."""
    if predict.model == "registry":
        model, described = _registered(predict, mlflow)
        return _label(model, described, predict)
    evaluated = (evaluated_recommendation(evaluation_metrics, export_report, finetune_plan)
                 if predict.model == "auto" else None)
    name = resolve_model_choice(predict.model, export_report.get("recommendation"), evaluated)
    model = exported_models.get(name)
    if model is None:
        raise ValueError(f"predict.model resolves to {name}, which has never been exported: run "
                         f"`kedro run --pipelines=export` (for pruned_int8 with export.quantize: "
                         f"int8), or set predict.model: {always_exported()}")
    warning = provenance_warning(name, model.sha256, export_report)
    if warning:
        logger.warning(warning)
    return _label(model, name, predict)


def _registered(predict: PredictParams, mlflow: MlflowParams) -> tuple[OnnxModel, str]:
    if not mlflow.enabled or not mlflow.registry.name:
        raise ValueError("predict.model=registry reads the MLflow model registry of mlflow.yml: "
                         "it needs mlflow.enabled: true and mlflow.registry.name set")
    return load_registered(mlflow.registry.name, predict.registry_version)


def _label(model: OnnxModel, name: str, predict: PredictParams) -> pd.DataFrame:
    logger.info("Labelling %s with %s (%s, sha256 %s)", predict.path, name, model.precision,
                model.sha256[:12])
    items = iter_inputs(predict.path, predict.image_column, predict.file_column)
    rows = predict_rows(OnnxRunner(model, CPU, predict.threads), items,
                        predict.batch_size)
    table = predictions_table(rows)
    table["model"] = f"{name}@{model.sha256[:12]}"  # which file made these predictions
    return table

"""Shipping a trained classifier: ONNX export with a JSON sidecar, verification against PyTorch
with onnxruntime, int8 static quantisation, and onnxruntime inference (evaluation, prediction).

No Kedro here; the ``export`` and ``predict`` pipelines wire these functions.
"""

from ft_pipelines.core.export.artifact import NotExported, OnnxModel
from ft_pipelines.core.export.evaluate import (
    calibrate_onnx,
    evaluate_onnx,
    onnx_timed_model,
    score_onnx,
)
from ft_pipelines.core.export.exporter import export_classifier, export_onnx
from ft_pipelines.core.export.int8_search import search_int8
from ft_pipelines.core.export.predict import iter_inputs, predict_rows, predictions_table
from ft_pipelines.core.export.quantize import quantize_int8
from ft_pipelines.core.export.report import (
    assess_int8,
    evaluated_recommendation,
    provenance_warning,
    recommend,
    resolve_model_choice,
)
from ft_pipelines.core.export.runtime import CPU, OnnxRunner, session_options
from ft_pipelines.core.export.verify import ExportMismatchError, verify_export

__all__ = [
    "onnx_timed_model",
    "CPU",
    "ExportMismatchError",
    "NotExported",
    "OnnxModel",
    "OnnxRunner",
    "assess_int8",
    "calibrate_onnx",
    "evaluate_onnx",
    "evaluated_recommendation",
    "export_classifier",
    "export_onnx",
    "iter_inputs",
    "predict_rows",
    "predictions_table",
    "provenance_warning",
    "quantize_int8",
    "recommend",
    "resolve_model_choice",
    "score_onnx",
    "search_int8",
    "session_options",
    "verify_export",
]

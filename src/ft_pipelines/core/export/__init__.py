"""Shipping a trained classifier: ONNX export with a JSON sidecar, verification against PyTorch
with onnxruntime, int8 static quantisation, and onnxruntime inference (evaluation, prediction).

No Kedro here; the ``export`` and ``predict`` pipelines wire these functions.
"""

from ft_pipelines.core.export.artifact import (
    INPUT_NAME,
    OUTPUT_NAME,
    NotExported,
    OnnxModel,
)
from ft_pipelines.core.export.evaluate import (
    calibrate_onnx,
    evaluate_onnx,
    onnx_cost_metrics,
    onnx_timed_model,
    score_onnx,
)
from ft_pipelines.core.export.exporter import describe_source, export_classifier, export_onnx
from ft_pipelines.core.export.int8_search import search_int8
from ft_pipelines.core.export.predict import (
    PREDICTION_COLUMNS,
    iter_inputs,
    predict_rows,
    predictions_table,
)
from ft_pipelines.core.export.quantize import INT8_CONFIGS, quantize_config, quantize_int8
from ft_pipelines.core.export.report import (
    EXPORTED_MODELS,
    MODEL_CHOICES,
    assess_int8,
    evaluated_recommendation,
    evaluation_matches_export,
    provenance_warning,
    recommend,
    resolve_model_choice,
)
from ft_pipelines.core.export.runtime import (
    CPU,
    CUDA,
    OnnxRunner,
    execution_providers,
    session_options,
    softmax,
)
from ft_pipelines.core.export.verify import (
    ExportMismatchError,
    compare_logits,
    torch_logits,
    verify_export,
)

__all__ = [
    "CPU",
    "CUDA",
    "EXPORTED_MODELS",
    "INT8_CONFIGS",
    "INPUT_NAME",
    "MODEL_CHOICES",
    "OUTPUT_NAME",
    "PREDICTION_COLUMNS",
    "ExportMismatchError",
    "NotExported",
    "OnnxModel",
    "OnnxRunner",
    "assess_int8",
    "calibrate_onnx",
    "compare_logits",
    "describe_source",
    "evaluate_onnx",
    "execution_providers",
    "export_classifier",
    "export_onnx",
    "iter_inputs",
    "onnx_cost_metrics",
    "onnx_timed_model",
    "predict_rows",
    "predictions_table",
    "evaluated_recommendation",
    "evaluation_matches_export",
    "provenance_warning",
    "quantize_config",
    "quantize_int8",
    "recommend",
    "resolve_model_choice",
    "score_onnx",
    "search_int8",
    "session_options",
    "softmax",
    "torch_logits",
    "verify_export",
]

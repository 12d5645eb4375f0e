"""Shipping a trained classifier: ONNX export with a JSON sidecar, verification against PyTorch
with onnxruntime, int8 static quantisation, and onnxruntime inference (evaluation, prediction).

No Kedro here; the ``export`` and ``predict`` pipelines wire these functions, one node input or
output per registered exported model kind (``EXPORT_KINDS``).
"""

# the built-in exported model kinds register themselves on import
import ft_pipelines.core.export.builders  # noqa: F401
from ft_pipelines.core.export.artifact import NotExported, OnnxModel
from ft_pipelines.core.export.evaluate import (
    evaluate_onnx,
    onnx_timed_model,
    score_onnx,
)
from ft_pipelines.core.export.exporter import export_classifier, export_onnx
from ft_pipelines.core.export.kinds import (
    EXPORT_KINDS,
    ExportKind,
    always_exported,
    register_export_kind,
)
from ft_pipelines.core.export.predict import iter_inputs, predict_rows, predictions_table
from ft_pipelines.core.export.quantize import quantize_int8
from ft_pipelines.core.export.report import (
    evaluated_recommendation,
    provenance_warning,
    recommend,
    resolve_model_choice,
)
from ft_pipelines.core.export.runtime import CPU, OnnxRunner, session_options
from ft_pipelines.core.export.verify import ExportMismatchError

__all__ = [
    "onnx_timed_model",
    "CPU",
    "EXPORT_KINDS",
    "ExportKind",
    "always_exported",
    "ExportMismatchError",
    "NotExported",
    "OnnxModel",
    "OnnxRunner",
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
    "register_export_kind",
    "resolve_model_choice",
    "score_onnx",
    "session_options",
]

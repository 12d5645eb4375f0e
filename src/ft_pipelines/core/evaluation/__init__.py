"""Evaluation: accuracy and calibration metrics, cost (parameters, MACs, size, latency,
throughput), the side-by-side comparison and its report, and the figures."""

from ft_pipelines.core.evaluation.cost import cost_metrics, measure_latency, measure_throughput
from ft_pipelines.core.evaluation.metrics import (
    classification_metrics,
    expected_calibration_error,
    predict,
)
from ft_pipelines.core.evaluation.plots import (
    confusion_matrix_figure,
    importance_distribution_figure,
    layer_divergence_figure,
    learning_curves,
)
from ft_pipelines.core.evaluation.report import (
    evaluate_models,
    linear_probe_probs,
    render_report,
)

__all__ = [
    "classification_metrics",
    "confusion_matrix_figure",
    "cost_metrics",
    "evaluate_models",
    "expected_calibration_error",
    "importance_distribution_figure",
    "layer_divergence_figure",
    "learning_curves",
    "linear_probe_probs",
    "measure_latency",
    "measure_throughput",
    "predict",
    "render_report",
]

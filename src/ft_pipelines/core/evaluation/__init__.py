"""Evaluation: accuracy and calibration metrics, cost (parameters, MACs, size, latency,
throughput), the cheap baselines, the side-by-side comparison, which model to ship, the report,
and the figures."""

from ft_pipelines.core.evaluation.baselines import (
    PIXEL_BASELINES,
    grey_pixels,
    linear_probe_model,
    pixel_baselines,
)
from ft_pipelines.core.evaluation.cost import (
    TimedModel,
    compare_timings,
    cost_metrics,
    interleaved_rounds,
    measure_latency,
    measure_throughput,
    round_order,
    static_cost,
    time_torch_models,
    timed_calls_ms,
    timing_settings,
    timing_summary,
    within_round_ratio,
)
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
    REFERENCE_ROWS,
    comparison_table,
    evaluate_models,
    flag_rejected_pruning,
    mark_not_recommended,
    render_report,
    ship_recommendation,
)

__all__ = [
    "TimedModel",
    "compare_timings",
    "interleaved_rounds",
    "round_order",
    "static_cost",
    "time_torch_models",
    "timing_settings",
    "within_round_ratio",
    "PIXEL_BASELINES",
    "REFERENCE_ROWS",
    "classification_metrics",
    "comparison_table",
    "confusion_matrix_figure",
    "cost_metrics",
    "evaluate_models",
    "expected_calibration_error",
    "flag_rejected_pruning",
    "importance_distribution_figure",
    "layer_divergence_figure",
    "learning_curves",
    "grey_pixels",
    "linear_probe_model",
    "mark_not_recommended",
    "measure_latency",
    "measure_throughput",
    "predict",
    "pixel_baselines",
    "render_report",
    "ship_recommendation",
    "timed_calls_ms",
    "timing_summary",
]

"""Evaluation: accuracy and calibration metrics, cost (parameters, MACs, size, latency,
throughput), the cheap baselines, the side-by-side comparison, which model to ship, the report,
and the figures."""

from ft_pipelines.core.evaluation.baselines import pixel_baselines
from ft_pipelines.core.evaluation.cost import (
    compare_timings,
    measure_latency,
    measure_throughput,
    timed_calls_ms,
    timing_settings,
    timing_summary,
)
from ft_pipelines.core.evaluation.metrics import classification_metrics, predict
from ft_pipelines.core.evaluation.plots import (
    importance_distribution_figure,
    layer_divergence_figure,
    learning_curves,
)
from ft_pipelines.core.evaluation.report import (
    comparison_table,
    evaluate_models,
    flag_rejected_pruning,
    mark_not_recommended,
    render_report,
    ship_metric,
    ship_recommendation,
)

__all__ = [
    "compare_timings",
    "classification_metrics",
    "comparison_table",
    "evaluate_models",
    "flag_rejected_pruning",
    "importance_distribution_figure",
    "layer_divergence_figure",
    "learning_curves",
    "mark_not_recommended",
    "measure_latency",
    "measure_throughput",
    "pixel_baselines",
    "predict",
    "render_report",
    "ship_metric",
    "ship_recommendation",
    "timed_calls_ms",
    "timing_settings",
    "timing_summary",
]

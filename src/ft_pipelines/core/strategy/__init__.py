"""The decision matrix: dataset size x similarity -> a fine-tuning plan that says why."""

from ft_pipelines.core.strategy.budget import resolve_budget
from ft_pipelines.core.strategy.decision_matrix import (
    DECISION_MATRIX,
    STRATEGIES,
    select_strategy,
    trainable_blocks_from_divergence,
)

__all__ = [
    "DECISION_MATRIX",
    "STRATEGIES",
    "resolve_budget",
    "select_strategy",
    "trainable_blocks_from_divergence",
]

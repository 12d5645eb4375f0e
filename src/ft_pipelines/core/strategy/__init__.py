"""The decision matrix: dataset size x similarity -> a fine-tuning plan that says why; budgets
in optimiser steps; pilot trials that check the recommendation on the validation split."""

from ft_pipelines.core.strategy.decision_matrix import candidate_plans, select_strategy
from ft_pipelines.core.strategy.pilot import pilot_candidates, plan_after_pilot, run_pilot

__all__ = [
    "candidate_plans",
    "pilot_candidates",
    "plan_after_pilot",
    "run_pilot",
    "select_strategy",
]

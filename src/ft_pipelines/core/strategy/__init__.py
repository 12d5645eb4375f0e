"""The decision matrix: dataset size x similarity -> a fine-tuning plan that says why; budgets
in optimiser steps; pilot trials that check the recommendation on the validation split."""

from ft_pipelines.core.strategy.budget import resolve_budget
from ft_pipelines.core.strategy.decision_matrix import (
    DECISION_MATRIX,
    STRATEGIES,
    candidate_plans,
    select_strategy,
    trainable_blocks_from_divergence,
)
from ft_pipelines.core.strategy.pilot import (
    add_probe_candidates,
    add_recipe_variants,
    explain_pilot,
    pilot_candidates,
    plan_after_pilot,
    resolve_mode,
    run_pilot,
)
from ft_pipelines.core.strategy.recipe import (
    apply_recipe,
    choose_recipe,
    class_ratio,
    lr_find_plot,
    recipe_summary,
)

__all__ = [
    "add_probe_candidates",
    "add_recipe_variants",
    "apply_recipe",
    "choose_recipe",
    "class_ratio",
    "lr_find_plot",
    "recipe_summary",
    "resolve_mode",
    "DECISION_MATRIX",
    "STRATEGIES",
    "candidate_plans",
    "explain_pilot",
    "pilot_candidates",
    "plan_after_pilot",
    "resolve_budget",
    "run_pilot",
    "select_strategy",
    "trainable_blocks_from_divergence",
]

"""Thin nodes: size x similarity -> the matrix's recommendation and its training recipe; when
strategy.mode says pilot (or auto on a small training split), short trials that check it and the
winner's weights to continue from."""

from __future__ import annotations

import logging

import pandas as pd
from torch import nn

from ft_pipelines.core.data import split_image_data
from ft_pipelines.core.strategy import (
    add_probe_candidates,
    add_recipe_variants,
    candidate_plans,
    choose_recipe,
    pilot_candidates,
    plan_after_pilot,
    recipe_summary,
    resolve_mode,
    run_pilot,
    select_strategy,
)
from ft_pipelines.params import FinetuneParams, RuntimeParams, StrategyParams, SurgeryParams

logger = logging.getLogger(__name__)


def plan_finetuning(dataset_profile: dict, similarity_metrics: dict,
                    layer_divergence: pd.DataFrame, strategy: StrategyParams,
                    finetune: FinetuneParams) -> dict:
    """The matrix's plan with its recipe; when the mode resolves to pilot also the plan of every
    pilot candidate (each with its own recipe)."""
    blocks = similarity_metrics["blocks"]
    plan = select_strategy(dataset_profile, similarity_metrics, layer_divergence, blocks,
                           strategy, batch_size=finetune.batch_size)
    mode, why = resolve_mode(strategy.mode, plan, strategy.auto.pilot_max_train_images)
    plan.update(mode_requested=strategy.mode, mode_reason=why)
    plan["reasons"].append(why)
    _add_recipe(plan, dataset_profile, strategy, finetune)
    if mode == "pilot" and strategy.override == "auto":
        candidates, skipped = pilot_candidates(plan, strategy.pilot)
        plan["candidate_plans"] = candidate_plans(
            dataset_profile, similarity_metrics, layer_divergence, blocks, strategy, candidates,
            batch_size=finetune.batch_size)
        skipped += add_probe_candidates(plan["candidate_plans"], strategy.pilot, len(blocks))
        for candidate in plan["candidate_plans"].values():
            candidate.update(mode_requested=strategy.mode, mode_reason=why)
            candidate["reasons"].append(why)
            _add_recipe(candidate, dataset_profile, strategy, finetune)
        add_recipe_variants(plan["candidate_plans"], strategy.pilot, plan["recommended"])
        plan["left_out"] = skipped
    return plan


def _add_recipe(plan: dict, profile: dict, strategy: StrategyParams,
                finetune: FinetuneParams) -> None:
    """plan["recipe"] for the plan's strategy; finetune.* values off their default win."""
    plan["recipe"] = choose_recipe(plan["strategy"], profile, strategy.recipe,
                                   finetune.model_dump(), FinetuneParams().model_dump())
    plan["reasons"].append(recipe_summary(plan["recipe"]))


def select_by_pilot(strategy_recommendation: dict, pretrained_model: nn.Module,
                    images: pd.DataFrame, strategy: StrategyParams, finetune: FinetuneParams,
                    surgery: SurgeryParams, decode_cache_dir: str | None,
                    runtime: RuntimeParams) -> tuple[dict, nn.Module]:
    """(finetune_plan, pilot_model). Matrix mode: the recommendation and the pretrained network
    unchanged; pilot mode: the winner's plan and its pilot weights when it continues from them,
    the pretrained network when it retrains from it (``plan["start_from"]``)."""
    if "candidate_plans" not in strategy_recommendation:
        if strategy.mode != "matrix" and strategy.override != "auto":
            logger.info("strategy.override=%s: no pilot trials", strategy.override)
        return strategy_recommendation, pretrained_model
    splits = split_image_data(images, pretrained_model.backbone_cfg.input_size, decode_cache_dir)
    winner, model, trials, epochs_done = run_pilot(
        pretrained_model, splits, strategy_recommendation["candidate_plans"],
        strategy_recommendation["recommended"], strategy.pilot.model_dump(),
        finetune.model_dump(), surgery.seed, runtime.model_dump())
    plan = plan_after_pilot(strategy_recommendation, winner, trials, epochs_done,
                            strategy_recommendation["left_out"], strategy.pilot.model_dump())
    return plan, (model if plan["start_from"] == "pilot" else pretrained_model)

"""The playbook's decision matrix: dataset size x similarity -> a fine-tuning plan that says why."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ft_pipelines.core.strategy.budget import resolve_budget
from ft_pipelines.core.strategy.settings import PartialFinetune, StrategyParams

STRATEGIES = ("head_only", "partial_finetune", "full_finetune", "from_scratch")

# (size, similarity) -> strategy: the playbook's matrix (docs/references.md, "Decision matrix").
DECISION_MATRIX = {
    ("small", "similar"): "head_only",
    ("large", "similar"): "full_finetune",
    ("small", "dissimilar"): "partial_finetune",
    ("large", "dissimilar"): "from_scratch",
}


def classify_size(profile: dict[str, Any], thresholds: dict[str, Any]) -> dict[str, Any]:
    """``large`` when both the training images per class and in total reach the thresholds."""
    per_class = profile["images_per_class_and_split"]
    train_counts = [splits.get("train", 0) for splits in per_class.values()]
    min_per_class, total = int(min(train_counts)), int(sum(train_counts))
    need_per_class = int(thresholds["min_train_per_class_large"])
    need_total = int(thresholds["min_train_total_large"])
    large = min_per_class >= need_per_class and total >= need_total
    verdict = "large" if large else "small"
    reason = (
        f"{total} training images, at least {min_per_class} per class: "
        f"{verdict} (large needs >= {need_per_class} per class and >= {need_total} in all)"
    )
    return {
        "class": verdict,
        "train_images": total,
        "min_train_per_class": min_per_class,
        "thresholds": {
            "min_train_per_class_large": need_per_class,
            "min_train_total_large": need_total,
        },
        "reason": reason,
    }


def classify_similarity(metrics: dict[str, Any], max_divergence: float) -> dict[str, Any]:
    """``similar`` when the BN-statistics divergence (median over layers) is <= the threshold."""
    value = float(metrics["bn_divergence"])
    verdict = "similar" if value <= max_divergence else "dissimilar"
    reason = (
        f"BN-statistics divergence {value:.3f} {'<=' if verdict == 'similar' else '>'} "
        f"{max_divergence}: {verdict} to the pretraining data"
    )
    return {
        "class": verdict,
        "signal": "bn_divergence",
        "value": value,
        "threshold": float(max_divergence),
        "logme": metrics.get("logme"),
        "reason": reason,
    }


def block_divergence(layer_divergence: pd.DataFrame, blocks: list[str]) -> list[float]:
    """Median divergence of the BN layers inside each block (NaN for a block without BN)."""
    values = []
    for block in blocks:
        inside = layer_divergence["layer"].str.startswith(block + ".")
        inside |= layer_divergence["layer"] == block
        values.append(
            float(layer_divergence.loc[inside, "divergence"].median())
            if inside.any()
            else float("nan")
        )
    return values


def trainable_blocks_from_divergence(
    per_block: list[float], min_blocks: int, max_blocks: int
) -> tuple[int, str]:
    """Train from the block where divergence rises most (Lee et al.: tune where the shift is)."""
    values = pd.Series(per_block).ffill().bfill().to_numpy()
    if len(values) < 2 or np.isnan(values).all():
        return min_blocks, "no per-block divergence: using the minimum"
    rises = np.diff(values)
    boundary = int(np.argmax(rises)) + 1  # first block after the largest rise
    from_rise = len(values) - boundary
    n = int(np.clip(from_rise, min_blocks, max_blocks))
    clamp = "" if n == from_rise else f" (clamped to [{min_blocks}, {max_blocks}] from {from_rise})"
    return n, (
        f"divergence rises most entering block {boundary} "
        f"({values[boundary - 1]:.2f} -> {values[boundary]:.2f}): train the last {n} blocks"
        f"{clamp}"
    )


def _trainable_blocks(strategy: str, partial: PartialFinetune, per_block: list[float]):
    if strategy == "head_only":
        return 0, "head only: every backbone block frozen"
    if strategy in ("full_finetune", "from_scratch"):
        return "all", "every block trains"
    n_blocks = len(per_block)
    fixed = partial.trainable_blocks
    if fixed != "auto":
        return int(fixed), f"strategy.partial.trainable_blocks={fixed} set by the user"
    return trainable_blocks_from_divergence(per_block, partial.min_blocks,
                                            min(partial.max_blocks, n_blocks))


def select_strategy(
    profile: dict[str, Any],
    metrics: dict[str, Any],
    layer_divergence: pd.DataFrame,
    blocks: list[str],
    params: StrategyParams | dict[str, Any],
    *,
    batch_size: int,
) -> dict[str, Any]:
    """Build the ``finetune_plan``: strategy, the numbers that decided it, and how to train.

    ``batch_size`` (``finetune.batch_size``) turns the strategy's epochs and ``min_steps`` into
    the optimiser steps the run will train (``budget``; ``epochs`` is the resolved count).
    """
    params = StrategyParams.model_validate(params) if isinstance(params, dict) else params
    override = params.override  # the schema allows auto or one of STRATEGIES
    if override == "auto":
        return _plan(profile, metrics, layer_divergence, blocks, params, batch_size=batch_size)
    plan = _plan(profile, metrics, layer_divergence, blocks, params, batch_size=batch_size,
                 strategy=override)
    plan["decided_by"] = "override"
    # after the decision matrix's line, before how the strategy trains
    plan["reasons"].insert(3, f"strategy.override={override} replaces the recommendation")
    return plan


def candidate_plans(profile: dict[str, Any], metrics: dict[str, Any],
                    layer_divergence: pd.DataFrame, blocks: list[str],
                    params: StrategyParams | dict[str, Any], strategies: list[str], *,
                    batch_size: int) -> dict[str, dict[str, Any]]:
    """The plan each strategy would get (blocks, regulariser, budget), for the pilot trials."""
    params = StrategyParams.model_validate(params) if isinstance(params, dict) else params
    return {strategy: _plan(profile, metrics, layer_divergence, blocks, params,
                            batch_size=batch_size, strategy=strategy)
            for strategy in strategies}


def _plan(profile: dict[str, Any], metrics: dict[str, Any], layer_divergence: pd.DataFrame,
          blocks: list[str], params: StrategyParams, *, batch_size: int,
          strategy: str | None = None) -> dict[str, Any]:
    """The plan for ``strategy``; None: the decision matrix's recommendation."""
    size = classify_size(profile, params.size.model_dump())
    similarity = classify_similarity(metrics, params.similarity.max_divergence)
    recommended = DECISION_MATRIX[(size["class"], similarity["class"])]
    strategy = strategy or recommended
    per_block = block_divergence(layer_divergence, blocks)
    trainable, block_reason = _trainable_blocks(strategy, params.partial, per_block)
    training = getattr(params.training, strategy)
    budget = resolve_budget(training.model_dump(), size["train_images"], batch_size)
    reasons = [
        size["reason"],
        similarity["reason"],
        f"decision matrix ({size['class']}, {similarity['class']}) -> {recommended}",
        block_reason,
        f"budget: {budget['reason']}",
    ]
    return {
        "strategy": strategy,
        "mode": "matrix",
        "start_from": "pretrained",
        "recommended": recommended,
        "decided_by": "auto",
        "size": size,
        "similarity": similarity,
        "reasons": reasons,
        "num_classes": len(profile["class_names"]),
        "trainable_blocks": trainable,
        "block_divergence": dict(zip(blocks, per_block, strict=True)),
        "drop_last_blocks": params.drop_last_blocks,
        "reinitialize": strategy == "from_scratch",
        "epochs": budget["epochs"],
        "budget": budget,
        "learning_rates": {
            "pretrained": training.lr_pretrained,
            "new": training.lr_new,
        },
        "regularizer": training.regularizer.model_dump(),
    }

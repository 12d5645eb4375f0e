"""plan_finetuning: strategy.mode=auto's pick and the plan's recipe, with the real schemas."""

import pandas as pd

from ft_pipelines.params import FinetuneParams, StrategyParams
from ft_pipelines.pipelines.strategy_selection.nodes import plan_finetuning

BLOCKS = ["blocks.0", "blocks.1", "blocks.2"]
LAYERS = pd.DataFrame({"layer": [f"{b}.bn" for b in BLOCKS], "divergence": [0.5, 2.0, 2.5]})
METRICS = {"bn_divergence": 2.0, "blocks": BLOCKS}


def profile(counts: list[int]) -> dict:
    return {"class_names": [str(i) for i in range(len(counts))],
            "images_per_class_and_split": {str(i): {"train": n, "val": 2, "test": 2}
                                           for i, n in enumerate(counts)}}


def test_auto_mode_plans_pilot_candidates_each_with_a_recipe():
    plan = plan_finetuning(profile([6] * 10), METRICS, LAYERS, StrategyParams(),
                           FinetuneParams())
    assert plan["mode_requested"] == "auto" and "-> pilot" in plan["mode_reason"]
    assert "head_only" in plan["candidate_plans"]
    for candidate in plan["candidate_plans"].values():
        assert candidate["recipe"]["class_balance"]["value"] == "none"
        assert any(r.startswith("recipe:") for r in candidate["reasons"])


def test_auto_mode_keeps_the_matrix_on_large_training_splits():
    plan = plan_finetuning(profile([100] * 10), METRICS, LAYERS, StrategyParams(),
                           FinetuneParams())
    assert "candidate_plans" not in plan and "-> matrix" in plan["mode_reason"]
    assert plan["mode_reason"] in plan["reasons"]


def test_imbalanced_split_gets_weights_unless_the_user_says_otherwise():
    counts = [60, 40, 20, 6]
    matrix = StrategyParams(mode="matrix")
    plan = plan_finetuning(profile(counts), METRICS, LAYERS, matrix, FinetuneParams())
    assert plan["recipe"]["class_balance"]["value"] == "weights"
    assert plan["recipe"]["class_balance"]["imbalanced"]
    user = plan_finetuning(profile(counts), METRICS, LAYERS, matrix,
                           FinetuneParams(class_balance="sampler"))
    assert user["recipe"]["class_balance"]["source"] == "user"
    assert user["recipe"]["class_balance"]["value"] == "sampler"

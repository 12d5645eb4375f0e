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
    probe = plan["candidate_plans"]["head_only_drop1"]  # strategy.pilot.probe_drop_blocks [1]
    assert probe["strategy"] == "head_only" and probe["drop_last_blocks"] == 1
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


def _select_with_a_stubbed_pilot(monkeypatch, strategy: StrategyParams):
    """select_by_pilot on a real plan; the trials themselves replaced (they are tested in
    tests/core/strategy): head_only wins after 1 epoch with its own (trained) weights."""
    from types import SimpleNamespace

    import torch

    from ft_pipelines.params import RuntimeParams, SurgeryParams
    from ft_pipelines.pipelines.strategy_selection import nodes

    plan = plan_finetuning(profile([6] * 10), METRICS, LAYERS, strategy, FinetuneParams())
    pretrained, trained = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    pretrained.backbone_cfg = SimpleNamespace(input_size=32)
    trials = [{"round": 1, "strategy": s, "val_top1": v, "total_steps": 1, "steps": 1,
               "seconds": 0.1} for s, v in (("head_only", 0.9), ("partial_finetune", 0.5))]
    monkeypatch.setattr(nodes, "split_image_data", lambda *args: {})
    monkeypatch.setattr(nodes, "run_pilot", lambda *args: ("head_only", trained, trials, 1))
    chosen, model = nodes.select_by_pilot(plan, pretrained, pd.DataFrame(), strategy,
                                          FinetuneParams(), SurgeryParams(), None,
                                          RuntimeParams())
    return chosen, model, pretrained, trained


def test_after_the_pilot_a_small_split_retrains_from_the_pretrained_network(monkeypatch):
    plan, model, pretrained, _ = _select_with_a_stubbed_pilot(monkeypatch, StrategyParams())
    assert plan["strategy"] == "head_only" and plan["start_from"] == "pretrained"
    assert model is pretrained  # backbone_surgery then does the winner's surgery on it
    assert plan["epochs"] == plan["budget"]["epochs"]  # its full budget, not the rest


def test_after_the_pilot_a_larger_split_continues_from_the_winner(monkeypatch):
    strategy = StrategyParams.model_validate({"pilot": {"restart_max_train_images": 10}})
    plan, model, _, trained = _select_with_a_stubbed_pilot(monkeypatch, strategy)
    assert plan["start_from"] == "pilot" and model is trained
    assert plan["epochs"] == max(1, plan["budget"]["epochs"] - 1)


def test_recipe_variants_join_the_pilot_candidates():
    strategy = StrategyParams.model_validate(
        {"pilot": {"recipe_variants": {"weights": {"class_balance": "weights"}}}})
    plan = plan_finetuning(profile([6] * 10), METRICS, LAYERS, strategy, FinetuneParams())
    name = f"{plan['recommended']}+weights"
    variant = plan["candidate_plans"][name]
    assert variant["recipe"]["class_balance"]["value"] == "weights"
    assert variant["recipe"]["class_balance"]["source"] == "pilot"
    assert plan["candidate_plans"][plan["recommended"]]["recipe"]["class_balance"]["value"] \
        == "none"  # balanced data: the plain plan keeps the plan's choice

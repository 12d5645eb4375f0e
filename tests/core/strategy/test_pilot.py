"""Pilot logic that needs no training: candidates, tie-breaking, the explanation."""

from __future__ import annotations

import pandas as pd
import pytest

from ft_pipelines.core.strategy import (
    add_probe_candidates,
    add_recipe_variants,
    pilot_candidates,
    plan_after_pilot,
)
from ft_pipelines.core.strategy.pilot import _rank_key, explain_pilot
from tests.conftest import MULTI_PROCESS


def plan(recommended: str, per_class: int) -> dict:
    return {"recommended": recommended, "size": {"min_train_per_class": per_class}}


def test_auto_leaves_from_scratch_out_on_few_images():
    candidates, skipped = pilot_candidates(plan("partial_finetune", 20),
                                           {"candidates": "auto", "from_scratch_min_per_class": 50})
    assert candidates == ["head_only", "partial_finetune", "full_finetune"]
    assert "20 training images" in skipped[0]
    candidates, skipped = pilot_candidates(plan("partial_finetune", 80), {"candidates": "auto"})
    assert candidates[-1] == "from_scratch" and not skipped


def test_the_recommendation_is_always_a_candidate():
    candidates, _ = pilot_candidates(plan("partial_finetune", 80),
                                     {"candidates": ["from_scratch", "head_only"]})
    assert candidates == ["head_only", "partial_finetune", "from_scratch"]


@pytest.mark.parametrize(("recommended", "expected"), [("full_finetune", "full_finetune"),
                                                       ("from_scratch", "head_only")])
def test_ties_go_to_the_recommendation_then_the_cheaper(recommended, expected):
    trials = [{"strategy": s, "val_top1": 0.9} for s in ("full_finetune", "head_only")]
    assert sorted(trials, key=lambda t: _rank_key(t, recommended))[0]["strategy"] == expected


def test_explanation_says_when_the_pilot_disagrees():
    trials = [{"strategy": "head_only", "val_top1": 0.6, "total_steps": 10},
              {"strategy": "partial_finetune", "val_top1": 0.8, "total_steps": 10}]
    assert "confirms" in explain_pilot("partial_finetune", "partial_finetune", trials)
    text = explain_pilot("partial_finetune", "head_only", trials)
    assert "overrules" in text and "80.0%" in text and "60.0%" in text


def test_trials_train_on_runtime_device_and_precision_in_this_process(bundled_backbone,
                                                                      monkeypatch):
    from ft_pipelines.core.strategy import pilot as pilot_module

    seen = []

    def fake_finetune(model, splits, plan, settings, runtime=None, anchor=None):
        seen.append(runtime)
        return model, pd.DataFrame({"val_acc": [0.5]})

    monkeypatch.setattr(pilot_module, "finetune_model", fake_finetune)
    plans = {s: {"num_classes": 3, "trainable_blocks": 1, "drop_last_blocks": 0,
                 "reinitialize": False, "regularizer": {"name": "none"},
                 "budget": {"steps": 4, "steps_per_epoch": 1}}
             for s in ("head_only", "partial_finetune")}
    runtime = {"device": "cpu", "precision": "bf16", "threads": 2,
               "distributed": {"processes": 2}}
    pilot_module.run_pilot(bundled_backbone, {}, plans, "head_only", {"budget_fraction": 1.0},
                           {}, 0, runtime)
    assert seen and all(r == {"device": "cpu", "precision": "bf16"} for r in seen)


def _recommendation(train_images: int, epochs: int = 8) -> dict:
    plans = {s: {"strategy": s, "epochs": epochs, "reasons": [], "trainable_blocks": 0,
                 "budget": {"steps_per_epoch": 5, "steps": epochs * 5}}
             for s in ("head_only", "partial_finetune")}
    for candidate in plans.values():
        candidate["size"] = {"train_images": train_images}
    return {"recommended": "partial_finetune", "candidate_plans": plans}


TRIALS = [{"round": 1, "strategy": "head_only", "val_top1": 0.9, "total_steps": 10, "steps": 10,
           "seconds": 1.0},
          {"round": 1, "strategy": "partial_finetune", "val_top1": 0.8, "total_steps": 10,
           "steps": 10, "seconds": 2.0}]


def test_on_a_small_split_the_winner_retrains_from_the_pretrained_weights():
    plan = plan_after_pilot(_recommendation(285), "head_only", TRIALS, 2, [],
                            {"budget_fraction": 0.5})
    assert plan["start_from"] == "pretrained" and plan["epochs"] == 8  # its full budget
    assert plan["pilot"]["restart"] and plan["pilot"]["remaining_steps"] == 40
    assert "retrains head_only from the pretrained weights" in plan["reasons"][-1]
    assert "285 training images <= strategy.pilot.restart_max_train_images 600" \
        in plan["reasons"][-1]


def test_above_the_limit_the_winner_continues_from_its_pilot_weights():
    plan = plan_after_pilot(_recommendation(285), "head_only", TRIALS, 2, [],
                            {"budget_fraction": 0.5, "restart_max_train_images": 100})
    assert plan["start_from"] == "pilot" and plan["epochs"] == 6  # 8 minus the pilot's 2
    assert not plan["pilot"]["restart"] and "continues from the pilot weights" \
        in plan["reasons"][-1]


def _pilot_on_disagreeing_ranks():
    """One rank's pilot (module level: spawned ranks import it): rank 1 measures the opposite
    validation scores and has another training-set size, so alone it would pick the other
    strategy and continue instead of retraining."""
    import torch.distributed as dist

    from ft_pipelines.core.strategy import pilot as pilot_module
    from ft_pipelines.core.training import world
    from tests.core.training.test_distributed import _register_tiny
    from tests.core.training.tiny import tiny_model

    _register_tiny()
    rank = world()[0]
    scores = {"head_only": 0.9, "partial_finetune": 0.5}

    def measured(model, splits, plan, settings, runtime=None, anchor=None):
        value = scores[plan["strategy"]]
        return model, pd.DataFrame({"val_acc": [value if rank == 0 else 1.4 - value]})

    pilot_module.finetune_model = measured  # this rank's process only
    recommendation = _recommendation(100 if rank == 0 else 10_000)
    for name, candidate in recommendation["candidate_plans"].items():
        candidate.update(num_classes=3, drop_last_blocks=0, reinitialize=False,
                         trainable_blocks=0 if name == "head_only" else 1,
                         regularizer={"name": "none"})
    winner, _, trials, done = pilot_module.run_pilot(
        tiny_model(), {}, recommendation["candidate_plans"], "partial_finetune",
        {"budget_fraction": 1.0}, {}, 0)
    plan = plan_after_pilot(recommendation, winner, trials, done, [], {"budget_fraction": 1.0})
    gathered = [None] * world()[1]
    dist.all_gather_object(gathered, (winner, plan["start_from"], plan["epochs"]))
    return gathered


@MULTI_PROCESS
def test_ranks_that_measure_differently_follow_rank_0s_pilot():
    from ft_pipelines.core.training.distributed import spawn_data_parallel

    rank0, rank1 = spawn_data_parallel(_pilot_on_disagreeing_ranks, (), 2, "cpu", timeout_s=60,
                                       task="pilot agreement test")
    assert rank0 == rank1 == ("head_only", "pretrained", 8)


def test_probe_candidates_are_head_only_plans_on_earlier_blocks():
    head = {"strategy": "head_only", "drop_last_blocks": 0, "trainable_blocks": 0,
            "reasons": ["matrix"]}
    plans = {"head_only": head, "partial_finetune": {"strategy": "partial_finetune"}}
    skipped = add_probe_candidates(plans, {"probe_drop_blocks": [1, 3, 7]}, blocks=7)
    assert list(plans) == ["head_only", "partial_finetune", "head_only_drop1", "head_only_drop3"]
    probe = plans["head_only_drop3"]
    assert probe["strategy"] == "head_only" and probe["drop_last_blocks"] == 3
    assert probe["candidate"] == "head_only_drop3" and "block 4 of 7" in probe["reasons"][-1]
    assert head["reasons"] == ["matrix"] and head["drop_last_blocks"] == 0  # a copy
    assert "head_only_drop7 left out" in skipped[0]  # dropping all 7 would leave no block
    no_head = {"partial_finetune": {"strategy": "partial_finetune"}}
    assert add_probe_candidates(no_head, {"probe_drop_blocks": [1]}, 7) == [] and \
        list(no_head) == ["partial_finetune"]


def test_a_probe_that_ties_wins_over_the_full_depth_head_for_being_cheaper():
    trials = [{"strategy": "head_only", "candidate": "head_only", "val_top1": 0.8,
               "drop_last_blocks": 0},
              {"strategy": "head_only", "candidate": "head_only_drop1", "val_top1": 0.8,
               "drop_last_blocks": 1},
              {"strategy": "partial_finetune", "candidate": "partial_finetune", "val_top1": 0.8,
               "drop_last_blocks": 0}]
    ranked = sorted(trials, key=lambda t: _rank_key(t, "partial_finetune"))
    assert [t["candidate"] for t in ranked] == ["partial_finetune", "head_only_drop1",
                                                "head_only"]


def _pilot_with_scores(monkeypatch, scores: dict[str, float], recommended: str):
    """run_pilot on the tiny CNN with measured validation replaced by ``scores`` (per
    candidate); returns (winner, trials, [(candidate, epochs) trained, in order])."""
    from ft_pipelines.core.strategy import pilot as pilot_module
    from tests.core.training.tiny import register_tiny_layout, tiny_model

    register_tiny_layout(monkeypatch)
    trained = []

    def measured(model, splits, plan, settings, runtime=None, anchor=None):
        trained.append((plan["candidate"], settings["epochs"]))
        return model, pd.DataFrame({"val_acc": [scores[plan["candidate"]]]})

    monkeypatch.setattr(pilot_module, "finetune_model", measured)
    plans = {name: {"candidate": name, "strategy": strategy, "num_classes": 3,
                    "trainable_blocks": blocks, "drop_last_blocks": drop, "epochs": 12,
                    "reinitialize": False, "regularizer": {"name": "none"},
                    "budget": {"steps": 12, "steps_per_epoch": 1},
                    **({"candidate_kind": "probe"} if drop else {})}
             for name, strategy, blocks, drop in (
                 ("head_only", "head_only", 0, 0), ("partial_finetune", "partial_finetune", 1, 0),
                 ("full_finetune", "full_finetune", "all", 0),
                 ("head_only_drop1", "head_only", 0, 1))}
    winner, model, trials, _ = pilot_module.run_pilot(tiny_model(), {}, plans, recommended,
                                                      {"budget_fraction": 0.5}, {}, 0)
    return winner, model, trials, trained


def test_when_head_only_wins_its_depth_is_chosen_on_whole_budgets(monkeypatch):
    scores = {"head_only": 0.8, "partial_finetune": 0.5, "full_finetune": 0.5,
              "head_only_drop1": 0.9}
    winner, model, trials, trained = _pilot_with_scores(monkeypatch, scores, "partial_finetune")
    # the halving: strategies only, at equal steps (6 steps, 2 rounds: 1 epoch per trial)
    assert trained[:5] == [("head_only", 1), ("partial_finetune", 1), ("full_finetune", 1),
                           ("head_only", 1), ("partial_finetune", 1)]
    # head_only won: each depth trains its whole budget (12 epochs), the best one is kept
    assert trained[5:] == [("head_only", 12), ("head_only_drop1", 12)]
    assert winner == "head_only_drop1" and len(list(model.children())) == 4  # truncated
    assert [(t["round"], t["candidate"], t["steps"]) for t in trials[-2:]] == [
        (3, "head_only", 12), (3, "head_only_drop1", 12)]
    # a tie goes to the shorter network, unless the matrix recommended head-only itself
    scores["head_only_drop1"] = 0.8
    assert _pilot_with_scores(monkeypatch, scores, "partial_finetune")[0] == "head_only_drop1"
    assert _pilot_with_scores(monkeypatch, scores, "head_only")[0] == "head_only"


def test_when_another_strategy_wins_no_probe_trains(monkeypatch):
    scores = {"head_only": 0.5, "partial_finetune": 0.9, "full_finetune": 0.6,
              "head_only_drop1": 1.0}
    winner, _, trials, trained = _pilot_with_scores(monkeypatch, scores, "partial_finetune")
    assert winner == "partial_finetune" and "head_only_drop1" not in dict(trained)
    assert {t["candidate"] for t in trials} == {"head_only", "partial_finetune", "full_finetune"}


def test_recipe_variants_are_candidates_of_the_recommendation(monkeypatch):
    from ft_pipelines.core.strategy import pilot as pilot_module
    from tests.core.training.tiny import register_tiny_layout, tiny_model

    register_tiny_layout(monkeypatch)
    plans = {s: {"strategy": s, "num_classes": 3, "trainable_blocks": blocks, "epochs": 4,
                 "drop_last_blocks": 0, "reinitialize": False, "regularizer": {"name": "none"},
                 "reasons": [], "budget": {"steps": 4, "steps_per_epoch": 1},
                 "recipe": {"cutmix": {"value": 0.0, "source": "plan", "reason": "off"}}}
             for s, blocks in (("head_only", 0), ("partial_finetune", 1))}
    add_recipe_variants(plans, {"recipe_variants": {"cutmix": {"cutmix": 1.0}}},
                        "partial_finetune")
    variant = plans["partial_finetune+cutmix"]
    assert variant["strategy"] == "partial_finetune" and variant["recipe"]["cutmix"] == {
        "value": 1.0, "source": "pilot",
        "reason": "cutmix=1.0: strategy.pilot.recipe_variants.cutmix"}
    assert plans["partial_finetune"]["recipe"]["cutmix"]["value"] == 0.0  # a copy
    seen = {}

    def measured(model, splits, plan, settings, runtime=None, anchor=None):
        seen[plan.get("candidate", plan["strategy"])] = settings["augment"]["cutmix"]
        return model, pd.DataFrame({"val_acc": [0.9 if "+" in plan.get("candidate", "") else
                                                0.5]})

    monkeypatch.setattr(pilot_module, "finetune_model", measured)
    winner, _, trials, done = pilot_module.run_pilot(
        tiny_model(), {}, plans, "partial_finetune", {"budget_fraction": 1.0}, {"augment": {}}, 0)
    assert seen == {"head_only": 0.0, "partial_finetune": 0.0, "partial_finetune+cutmix": 1.0}
    assert winner == "partial_finetune+cutmix"
    for plan in plans.values():
        plan["size"] = {"train_images": 60}
    chosen = plan_after_pilot({"recommended": "partial_finetune", "candidate_plans": plans},
                              winner, trials, done, [], {"budget_fraction": 1.0})
    # the fine-tuning stage trains the winner's recipe
    assert chosen["strategy"] == "partial_finetune" and chosen["recipe"]["cutmix"]["value"] == 1.0


def test_a_recipe_variant_must_name_ingredients():
    from ft_pipelines.core.strategy.settings import PilotSettings

    with pytest.raises(ValueError, match="variant 'strong': \\['cutmx'\\] to set"):
        PilotSettings(recipe_variants={"strong": {"cutmx": 1.0}})

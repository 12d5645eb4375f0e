"""strategy.mode=pilot through the real pipeline (ci settings: 64 px, 2 epochs, min_steps 1)."""

from __future__ import annotations

import json

import torch

from ft_pipelines.core.models import load_model_file
from tests.pipelines.conftest import latest, run_pipelines


def test_pilot_trials_pick_the_best_and_finetuning_continues_from_it(project):
    run_pipelines(project, ["data_ingestion", "pretrained_backbone", "similarity_analysis",
                            "strategy_selection", "backbone_surgery"],
                  **{"strategy.mode": "pilot", "ingestion.max_per_class": 20,
                     # continue from the pilot weights (on this small split it would retrain)
                     "strategy.pilot.restart_max_train_images": 0})
    plan = json.loads(latest(project, "05_model_input/finetune_plan.json").read_text())
    trials = plan["trials"]
    assert len(trials) >= 2 and len({t["strategy"] for t in trials}) >= 2
    assert all(0 <= t["val_top1"] <= 1 and t["seconds"] > 0 and t["steps"] >= 1 for t in trials)
    # from_scratch is left out: 12 training images per class < 50
    assert "from_scratch" not in {t["strategy"] for t in trials} and plan["pilot"]["left_out"]
    # the winner is the best trial (a strategy's val_top1 only grows across its rounds)
    best = max(t["val_top1"] for t in trials)
    assert plan["candidate"] == plan["pilot"]["winner"]  # a strategy or a head-only probe
    assert max(t["val_top1"] for t in trials if t["candidate"] == plan["candidate"]) == best
    if plan["strategy"] == "head_only":  # then each depth trained its whole budget
        depth = [t for t in trials if t["stage"] == "probe depth"]
        assert {t["candidate"] for t in depth} == {"head_only", "head_only_drop1"}
        assert plan["drop_last_blocks"] == (1 if plan["candidate"] == "head_only_drop1" else 0)
    assert plan["decided_by"] == "pilot" and plan["start_from"] == "pilot"
    assert plan["pilot"]["matrix_recommendation"] == plan["recommended"]
    assert plan["pilot"]["why"] in plan["reasons"][-2]
    # each trial trains its share of the budget, but at least one epoch
    per_epoch = plan["budget"]["steps_per_epoch"]
    assert all(t["steps"] <= max(plan["pilot"]["budget_steps"], per_epoch) for t in trials
               if t["stage"] == "halving")
    # the surgery stage hands the pilot weights on unchanged
    pilot = load_model_file(latest(project, "06_models/pilot_model.safetensors"))
    surgered = load_model_file(latest(project, "06_models/surgered_model.safetensors"))
    for (name, a), b in zip(pilot.state_dict().items(), surgered.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name


def test_matrix_mode_has_no_trials(project):
    run_pipelines(project, ["data_ingestion", "pretrained_backbone", "similarity_analysis",
                            "strategy_selection"], **{"ingestion.max_per_class": 10,
                                                      "strategy.mode": "matrix"})
    plan = json.loads(latest(project, "05_model_input/finetune_plan.json").read_text())
    assert plan["mode"] == "matrix" and plan["start_from"] == "pretrained"
    assert "trials" not in plan and plan["strategy"] == plan["recommended"]
    assert plan["budget"]["steps"] == max(plan["budget"]["epochs_configured"]
                                          * plan["budget"]["steps_per_epoch"],
                                          plan["budget"]["min_steps"])

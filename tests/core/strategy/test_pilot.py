"""Pilot logic that needs no training: candidates, tie-breaking, the explanation."""

from __future__ import annotations

import pandas as pd
import pytest

from ft_pipelines.core.strategy import pilot_candidates
from ft_pipelines.core.strategy.pilot import _rank_key, explain_pilot


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

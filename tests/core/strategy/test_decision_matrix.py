import pandas as pd
import pytest

from ft_pipelines.core.strategy import candidate_plans, select_strategy

PARAMS = {
    "override": "auto",
    "size": {"min_train_per_class_large": 100, "min_train_total_large": 1000},
    "similarity": {"max_divergence": 1.0},
    "partial": {"trainable_blocks": "auto", "min_blocks": 1, "max_blocks": 3},
    "training": {s: {"epochs": 3, "lr_pretrained": 0.01, "lr_new": 0.1,
                     "regularizer": {"name": "l2_sp", "alpha": 0.1, "beta": 0.01}}
                 for s in ("head_only", "partial_finetune", "full_finetune", "from_scratch")},
}
BLOCKS = ["blocks.0", "blocks.1", "blocks.2", "blocks.3"]
LAYERS = pd.DataFrame({"layer": [f"{b}.bn" for b in BLOCKS],
                       "divergence": [0.5, 0.6, 2.5, 2.7]})


def profile(per_class: int, classes: int = 10) -> dict:
    return {"class_names": [str(i) for i in range(classes)],
            "images_per_class_and_split": {str(i): {"train": per_class, "val": 2, "test": 2}
                                           for i in range(classes)}}


@pytest.mark.parametrize(("per_class", "divergence", "expected"), [
    (20, 0.5, "head_only"),
    (200, 0.5, "full_finetune"),
    (20, 1.5, "partial_finetune"),
    (200, 1.5, "from_scratch"),
])
def test_decision_matrix(per_class, divergence, expected):
    plan = select_strategy(profile(per_class), {"bn_divergence": divergence}, LAYERS, BLOCKS,
                           PARAMS, batch_size=64)
    assert plan["strategy"] == expected and plan["decided_by"] == "auto"
    assert any(f"{divergence:.3f}" in reason for reason in plan["reasons"])
    assert plan["num_classes"] == 10


def test_partial_trains_from_where_divergence_rises():
    plan = select_strategy(profile(20), {"bn_divergence": 1.5}, LAYERS, BLOCKS, PARAMS,
                           batch_size=64)
    assert plan["trainable_blocks"] == 2  # the big rise enters blocks.2
    assert any("block 2" in reason for reason in plan["reasons"])


def test_override_is_recorded():
    params = {**PARAMS, "override": "full_finetune"}
    plan = select_strategy(profile(20), {"bn_divergence": 0.5}, LAYERS, BLOCKS, params,
                           batch_size=64)
    assert plan["strategy"] == "full_finetune" and plan["recommended"] == "head_only"
    assert plan["decided_by"] == "override"
    # after the decision matrix's line: what was recommended, then what replaced it
    assert plan["reasons"][2].endswith("-> head_only")
    assert plan["reasons"][3] == "strategy.override=full_finetune replaces the recommendation"


def test_candidate_plans_are_the_overridden_plans_without_the_override():
    metrics = {"bn_divergence": 1.5}
    plans = candidate_plans(profile(20), metrics, LAYERS, BLOCKS, PARAMS,
                            ["head_only", "full_finetune"], batch_size=64)
    assert list(plans) == ["head_only", "full_finetune"]
    for strategy, plan in plans.items():
        overridden = select_strategy(profile(20), metrics, LAYERS, BLOCKS,
                                     {**PARAMS, "override": strategy}, batch_size=64)
        assert plan["strategy"] == strategy and plan["recommended"] == "partial_finetune"
        assert not any("override" in reason for reason in plan["reasons"])
        assert plan["reasons"] == [r for r in overridden["reasons"] if "override" not in r]
        for key in ("trainable_blocks", "budget", "learning_rates", "regularizer"):
            assert plan[key] == overridden[key], key


def test_unknown_override_names_the_parameter():
    from ft_pipelines.params import ParameterError, validate_parameters

    with pytest.raises(ParameterError, match="`strategy.override`: must be one of 'auto', "):
        validate_parameters({"strategy": {"override": "yolo"}})


@pytest.mark.parametrize(("per_class", "min_steps", "epochs", "steps"), [
    (6, 50, 50, 50),     # 60 images, batch 64: 1 step per epoch, 3 epochs < 50 steps
    (200, 50, 3, 96),    # 2,000 images: 32 steps per epoch x 3 epochs already > 50
    (20, 7, 3, 12),      # 200 images: 4 steps per epoch, 7 steps -> 2 epochs, but 3 epochs asked
])
def test_budget_is_max_of_epochs_and_min_steps(per_class, min_steps, epochs, steps):
    params = {**PARAMS, "training": {s: {**t, "min_steps": min_steps}
                                     for s, t in PARAMS["training"].items()}}
    plan = select_strategy(profile(per_class), {"bn_divergence": 0.5}, LAYERS, BLOCKS, params,
                           batch_size=64)
    assert plan["epochs"] == epochs and plan["budget"]["steps"] == steps
    assert plan["budget"]["trained_steps"] == epochs * plan["budget"]["steps_per_epoch"] >= steps
    assert any("min_steps" in reason for reason in plan["reasons"])

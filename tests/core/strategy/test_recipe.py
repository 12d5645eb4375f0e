"""plan["recipe"]: which ingredients the plan turns on and why; the user's finetune.* wins;
strategy.mode=auto picks the pilot on small training splits."""

import pytest

from ft_pipelines.core.strategy import (
    apply_recipe,
    choose_recipe,
    class_ratio,
    recipe_summary,
    resolve_mode,
)
from ft_pipelines.params import FinetuneParams, StrategyParams

DEFAULTS = FinetuneParams().model_dump()
RULES = StrategyParams().recipe.model_dump()


def profile(counts: list[int]) -> dict:
    return {"class_names": [str(i) for i in range(len(counts))],
            "images_per_class_and_split": {str(i): {"train": n, "val": 2, "test": 2}
                                           for i, n in enumerate(counts)}}


def rules(**changes) -> dict:
    return {**RULES, **changes}


def test_class_balance_auto_uses_the_measured_ratio():
    balanced = choose_recipe("head_only", profile([10, 9, 8]), RULES, DEFAULTS, DEFAULTS)
    assert balanced["class_balance"]["value"] == "none"
    assert not balanced["class_balance"]["imbalanced"]
    skewed = choose_recipe("head_only", profile([60, 20, 6]), RULES, DEFAULTS, DEFAULTS)
    entry = skewed["class_balance"]
    assert entry["value"] == "weights" and entry["imbalanced"] and entry["ratio"] == 10.0
    assert "ratio 10.00 > 3" in entry["reason"] and entry["source"] == "plan"
    assert class_ratio(profile([60, 0, 6])) == 10.0  # a class without training images left out


def test_mixup_rule_says_why_it_is_off_or_on():
    mixup = {**RULES["mixup"], "min_per_class": 50, "alpha": 0.3}
    small = choose_recipe("partial_finetune", profile([6] * 10), rules(mixup=mixup), DEFAULTS,
                          DEFAULTS)
    assert small["mixup"]["value"] == 0.0
    assert small["mixup"]["reason"] == ("mixup off: fewer than 50 training images per class "
                                        "(smallest class: 6)")
    large = choose_recipe("partial_finetune", profile([80] * 10), rules(mixup=mixup), DEFAULTS,
                          DEFAULTS)
    assert large["mixup"]["value"] == 0.3 and large["mixup"]["reason"].startswith("mixup on")


def test_rule_limited_to_strategies_and_null_is_never():
    layer_decay = {**RULES["layer_decay"], "min_per_class": 0}
    chosen = choose_recipe("head_only", profile([50] * 3), rules(layer_decay=layer_decay),
                           DEFAULTS, DEFAULTS)
    assert chosen["layer_decay"]["value"] is None
    assert "not for head_only" in chosen["layer_decay"]["reason"]
    full = choose_recipe("full_finetune", profile([50] * 3), rules(layer_decay=layer_decay),
                         DEFAULTS, DEFAULTS)
    assert full["layer_decay"]["value"] == RULES["layer_decay"]["factor"]
    assert "min_per_class is null" in full["ema"]["reason"]  # the default: never on


def test_user_setting_wins_and_the_plan_says_so():
    user = {**DEFAULTS, "class_balance": "sampler", "augment": {**DEFAULTS["augment"],
                                                                "mixup": 0.4}}
    chosen = choose_recipe("head_only", profile([60, 6]), RULES, user, DEFAULTS)
    assert chosen["class_balance"]["value"] == "sampler"
    assert chosen["class_balance"]["source"] == "user"
    assert "wins over the plan's 'weights'" in chosen["class_balance"]["reason"]
    assert chosen["mixup"] == {**chosen["mixup"], "value": 0.4, "source": "user"}
    assert "set by the user: class_balance, mixup" in recipe_summary(chosen)
    settings = apply_recipe(user, chosen)
    assert settings["class_balance"] == "sampler" and settings["augment"]["mixup"] == 0.4
    assert user["class_balance"] == "sampler"  # apply_recipe copies


def test_recipe_disabled_leaves_finetune_alone():
    chosen = choose_recipe("head_only", profile([60, 6]), rules(enabled=False), DEFAULTS,
                           DEFAULTS)
    assert {e["source"] for e in chosen.values()} == {"finetune"}
    assert apply_recipe(DEFAULTS, chosen) == DEFAULTS


def test_apply_recipe_sets_the_plans_values():
    chosen = choose_recipe("head_only", profile([60, 6]), RULES, DEFAULTS, DEFAULTS)
    assert apply_recipe(DEFAULTS, chosen)["class_balance"] == "weights"
    assert apply_recipe(DEFAULTS, None) == DEFAULTS


@pytest.mark.parametrize(("images", "expected"), [(60, "pilot"), (600, "pilot"),
                                                  (601, "matrix")])
def test_auto_mode_runs_the_pilot_on_small_training_splits(images, expected):
    plan = {"size": {"train_images": images, "min_train_per_class": 6}}
    mode, why = resolve_mode("auto", plan, 600)
    assert mode == expected and why.startswith(f"strategy.mode=auto -> {expected}")
    assert ("head_only" in why) == (expected == "pilot")
    assert resolve_mode("matrix", plan, 600)[0] == "matrix"


def test_auto_is_the_default_mode():
    assert StrategyParams().mode == "auto"


def test_lr_find_curve_reaches_the_plot_and_an_off_test_says_why():
    from ft_pipelines.core.strategy import lr_find_plot
    from ft_pipelines.core.training import finetune_model
    from tests.core.training.tiny import tiny_data, tiny_model

    plan = {"epochs": 1, "learning_rates": {"pretrained": 0.01, "new": 0.1},
            "regularizer": {"name": "none"}}
    splits = {"train": tiny_data(), "val": tiny_data(24, seed=1)}
    _, history = finetune_model(tiny_model(), splits, plan,
                                {"batch_size": 16, "progress": False, "lr_find": True})
    finding = history.attrs["lr_finding"]
    assert finding["lr_min"] / 10 == pytest.approx(history["lr_found"].iloc[0])
    figure = lr_find_plot(finding, {"value": True})
    assert len(figure.axes[0].lines[0].get_xdata()) == len(finding["lrs"])
    entry = {"value": False, "reason": "lr_find off: not for head_only"}
    off = lr_find_plot(None, entry)
    assert "not for head_only" in off.axes[0].texts[0].get_text()

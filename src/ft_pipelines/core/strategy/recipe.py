"""The plan chooses the training recipe (``plan["recipe"]``): which ingredients are on, with
the reason, from the strategy and the training split's size and class balance. A ``finetune.*``
value other than its default is the user's choice and wins over the plan (the plan says so).

The rules (``strategy.recipe``) turn an ingredient on when the smallest class has at least
``min_per_class`` training images and the strategy is listed; their defaults follow the recipe
study (docs/benchmarks.md)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from ft_pipelines.core.strategy.settings import RecipeDefaults, RecipeRule
from ft_pipelines.core.training.lr_find import LRFinding, lr_find_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: ingredient -> its key path under ``finetune``
INGREDIENTS: dict[str, tuple[str, ...]] = {
    "class_balance": ("class_balance",),
    "mixup": ("augment", "mixup"),
    "cutmix": ("augment", "cutmix"),
    "policy": ("augment", "policy"),
    "random_erasing": ("augment", "random_erasing"),
    "ema": ("ema",),
    "layer_decay": ("layer_decay",),
    "lr_find": ("lr_find",),
}


def _get(settings: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        settings = (settings or {}).get(key)
    return settings


def train_class_counts(profile: dict[str, Any]) -> dict[str, int]:
    """Training images per class, from the data profile."""
    return {str(name): int(splits.get("train", 0))
            for name, splits in profile["images_per_class_and_split"].items()}


def class_ratio(profile: dict[str, Any]) -> float:
    """Largest / smallest training class (classes with no training image left out)."""
    counts = [c for c in train_class_counts(profile).values() if c > 0]
    return max(counts) / min(counts) if counts else 1.0


def _class_balance(rules: RecipeDefaults, ratio: float) -> tuple[str, str]:
    mode, threshold = rules.class_balance, rules.imbalance_ratio
    if mode != "auto":
        return mode, (f"class_balance {mode}: strategy.recipe.class_balance (largest/smallest "
                      f"training class ratio {ratio:.2f})")
    if ratio > threshold:
        return "weights", (f"class_balance auto -> weights: largest/smallest training class "
                           f"ratio {ratio:.2f} > {threshold:g}")
    return "none", (f"class_balance auto -> none: largest/smallest training class ratio "
                    f"{ratio:.2f} <= {threshold:g}")


def _on_value(name: str, rule: RecipeRule) -> Any:
    """The ``finetune`` value an ingredient takes when the plan turns it on (the rule's own
    settings: alpha, policy, probability, decay/warmup, factor)."""
    if name in ("mixup", "cutmix"):
        return rule.alpha
    if name == "ema":
        return {"decay": rule.decay, "warmup": rule.warmup}
    return {"policy": lambda: rule.policy, "random_erasing": lambda: rule.probability,
            "layer_decay": lambda: rule.factor, "lr_find": lambda: True}[name]()


def _planned(name: str, rule: RecipeRule, strategy: str, per_class: int, off: Any
             ) -> tuple[Any, str]:
    """(value, reason) of one rule-driven ingredient."""
    need = rule.min_per_class
    if need is None:
        return off, f"{name} off: strategy.recipe.{name}.min_per_class is null (never on)"
    if strategy not in rule.strategies:
        return off, f"{name} off: not for {strategy} (strategy.recipe.{name}.strategies)"
    if per_class < int(need):
        return off, (f"{name} off: fewer than {need} training images per class (smallest "
                     f"class: {per_class})")
    value = _on_value(name, rule)
    return value, (f"{name} on ({value}): >= {need} training images per class (smallest "
                   f"class: {per_class}), strategy {strategy}")


def choose_recipe(strategy: str, profile: dict[str, Any], rules: RecipeDefaults | dict[str, Any],
                  finetune: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``plan["recipe"]``: per ingredient ``value``, ``source`` (plan | user | finetune) and
    ``reason``; ``class_balance`` also carries the measured ``ratio`` and ``imbalanced``.

    ``finetune``: the run's ``finetune`` parameters; ``defaults``: their schema defaults (a
    value that differs is the user's)."""
    rules = RecipeDefaults.model_validate(rules) if isinstance(rules, dict) else rules
    counts = [c for c in train_class_counts(profile).values() if c > 0]
    per_class, ratio = (min(counts) if counts else 0), class_ratio(profile)
    recipe: dict[str, Any] = {}
    for name, path in INGREDIENTS.items():
        user, default = _get(finetune, path), _get(defaults, path)
        key = "finetune." + ".".join(path)
        if not rules.enabled:
            entry = {"value": user, "source": "finetune",
                     "reason": f"{key}={user!r}: strategy.recipe.enabled is false"}
        else:
            if name == "class_balance":
                value, reason = _class_balance(rules, ratio)
            else:
                value, reason = _planned(name, getattr(rules, name), strategy, per_class,
                                         default)
            entry = {"value": value, "source": "plan", "reason": reason}
            if user != default:
                entry = {"value": user, "source": "user",
                         "reason": f"{key}={user!r} set by the user wins over the plan's "
                                   f"{value!r} ({reason})"}
        recipe[name] = entry
    threshold = rules.imbalance_ratio
    recipe["class_balance"].update(ratio=round(ratio, 3), imbalanced=ratio > threshold,
                                   threshold=threshold)
    return recipe


def recipe_summary(recipe: dict[str, Any]) -> str:
    """One line for the plan's reasons: what is on, and what the user set."""
    on = [f"{n}={e['value']}" for n, e in recipe.items() if _is_on(e["value"])]
    user = [n for n, e in recipe.items() if e["source"] == "user"]
    line = f"recipe: {', '.join(on) if on else 'every ingredient off'}"
    return line + (f" (set by the user: {', '.join(user)})" if user else "")


def _is_on(value: Any) -> bool:
    # a tuple, not a set: the EMA's value is a dict (unhashable)
    return not (value is None or value is False or value in (0, "none"))


def apply_recipe(settings: dict[str, Any], recipe: dict[str, Any] | None) -> dict[str, Any]:
    """``finetune`` settings with the recipe's values in place (a copy; no recipe: unchanged)."""
    settings = copy.deepcopy(settings)
    for name, entry in (recipe or {}).items():
        path = INGREDIENTS[name]
        target = settings
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = copy.deepcopy(entry["value"])
    return settings


def lr_find_plot(finding: dict[str, Any] | None, entry: dict[str, Any] | None) -> Figure:
    """The LR range test's curve (``finding``: ``LRFinding`` as a dict); when it did not run,
    a figure that says why (the recipe's ``lr_find`` entry), so the versioned plot is never a
    stale one from an earlier run."""
    if finding:
        return lr_find_figure(LRFinding(**finding))
    from matplotlib.figure import Figure  # only when a figure is asked for

    figure = Figure(figsize=(5, 3.5))
    axes = figure.subplots()
    axes.axis("off")
    why = (entry or {}).get("reason") or "finetune.lr_find is false"
    if (entry or {}).get("value"):
        why = "resumed from a checkpoint: the rates come from it"
    axes.text(0.5, 0.5, "The LR range test did not run:\n" + why, ha="center", va="center",
              wrap=True, transform=axes.transAxes)
    return figure

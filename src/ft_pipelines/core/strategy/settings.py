"""``strategy``: dataset size x similarity -> strategy, how each strategy trains, the mode and the
recipe rules (the schema lives with the code that reads it; ``ft_pipelines.params`` composes it)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from ft_pipelines.core.regularizers import PlannedRegularizer
from ft_pipelines.core.utils.schema import (
    Count,
    Fraction,
    LearningRate,
    NonNegativeInt,
    Schema,
    invalid,
)

StrategyName = Literal["head_only", "partial_finetune", "full_finetune", "from_scratch"]


class TrainingPlan(Schema):
    epochs: Count
    min_steps: Count = 1  # optimiser steps at least: max(epochs x steps_per_epoch, min_steps)
    lr_pretrained: LearningRate
    lr_new: LearningRate
    regularizer: PlannedRegularizer


def _plan(epochs: int, min_steps: int, lr_pretrained: float, lr_new: float,
          **regularizer: Any) -> Any:
    return Field(default_factory=lambda: TrainingPlan(
        epochs=epochs, min_steps=min_steps, lr_pretrained=lr_pretrained, lr_new=lr_new,
        regularizer=PlannedRegularizer(**regularizer)))


class StrategyTraining(Schema):
    """Per strategy: epochs, min_steps, learning rates, regulariser (references.md).

    min_steps sit below the default demo's epochs x steps (digits: 20 steps per epoch), so they
    only lengthen runs on small data sets (60 images: one step per epoch)."""

    head_only: TrainingPlan = _plan(15, 100, 0.01, 0.05, name="l2", beta=0.0001)
    partial_finetune: TrainingPlan = _plan(8, 150, 0.02, 0.05, name="l2_sp", alpha=0.01,
                                           beta=0.01)
    full_finetune: TrainingPlan = _plan(8, 150, 0.01, 0.05, name="l2_sp", alpha=0.1, beta=0.01)
    from_scratch: TrainingPlan = _plan(30, 300, 0.05, 0.05, name="l2", beta=0.0005)

    @model_validator(mode="before")
    @classmethod
    def _fill_from_defaults(cls, data: Any) -> Any:
        """A strategy given in part keeps the defaults of the keys it leaves out."""
        if not isinstance(data, dict):
            return data
        filled = dict(data)
        for name, given in data.items():
            field = cls.model_fields.get(name)
            if field is not None and isinstance(given, dict):
                filled[name] = {**field.get_default(call_default_factory=True).model_dump(),
                                **given}
        return filled


class SizeThresholds(Schema):
    """"large" needs both."""

    min_train_per_class_large: Count = 1000
    min_train_total_large: Count = 10000


class SimilarityThreshold(Schema):
    # median BN-statistics divergence at or below which the target counts as similar
    max_divergence: float = Field(default=1.0, ge=0)


def _auto_or_count(value: Any) -> Any:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ValueError(f"must be auto or an integer >= 1, got {value!r}")


class PartialFinetune(Schema):
    trainable_blocks: Annotated[Literal["auto"] | int, BeforeValidator(_auto_or_count)] = "auto"
    min_blocks: Count = 3
    max_blocks: Count = 5

    @model_validator(mode="after")
    def _check_range(self) -> PartialFinetune:
        if self.min_blocks > self.max_blocks:
            raise invalid("max_blocks", f"must be >= strategy.partial.min_blocks "
                                        f"({self.min_blocks}), got {self.max_blocks}")
        return self


class PilotSettings(Schema):
    """strategy.mode=pilot: short trials of the candidates, successive halving on validation."""

    candidates: Literal["auto"] | list[StrategyName] = "auto"  # auto: all four that are possible
    budget_fraction: float = Field(default=0.5, gt=0, le=1)  # of the recommendation's steps
    from_scratch_min_per_class: Count = 50  # auto leaves from_scratch out below this
    # the winner retrains from the pretrained weights for its full budget at or below this many
    # training images (the pilot only chooses); above, it continues from its pilot weights for
    # the rest of its budget. Measured: docs/strategy.md, "After the pilot"
    restart_max_train_images: NonNegativeInt = 600
    # when head_only wins, the depths it is also tried at (whole budgets, best on validation):
    # the head on the features k blocks earlier (the last k dropped, surgery's drop_last_blocks);
    # a far domain's signal can be in earlier features (Head2Toe, Evci et al. 2022). [] : none.
    probe_drop_blocks: list[Count] = Field(default_factory=lambda: [1])
    # recipe variants the halving compares as it compares strategies: name -> {ingredient:
    # value} (ingredients: strategy.recipe's), each a candidate "<recommendation>+<name>" that
    # trains the matrix's recommendation with those values on top of its plan's recipe
    recipe_variants: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_candidates(self) -> PilotSettings:
        if self.candidates != "auto" and len(set(self.candidates)) < 2:
            raise invalid("candidates", f"needs at least two strategies to compare, got "
                                        f"{self.candidates}")
        known = [n for n in RecipeDefaults.model_fields if n not in ("enabled", "imbalance_ratio")]
        for name, values in self.recipe_variants.items():
            unknown = sorted(set(values) - set(known))
            if unknown or not values:
                raise invalid("recipe_variants", f"variant {name!r}: {unknown or 'nothing'} "
                                                 f"to set; use ingredients of {list(known)}")
        return self


class AutoMode(Schema):
    """strategy.mode=auto: the pilot where it is cheap and the matrix errs most, else the matrix.

    The pilot's trials cost about half the training they check; measured on this project's
    2-core machine (docs/strategy.md, "strategy.mode: auto"): 10-30 s on LFW (12-140 training
    images), 45 s on digits with 60, 150 s on full digits (1,257) -- above the default demo's
    margin to 3 minutes. 600 training images keeps the pilot under about 90 s."""

    pilot_max_train_images: Count = 600  # pilot at or below this many training images


ALL_STRATEGIES: list[StrategyName] = ["head_only", "partial_finetune", "full_finetune",
                                      "from_scratch"]


class RecipeRule(Schema):
    """When the plan turns an ingredient on: the smallest class has at least ``min_per_class``
    training images (null: the plan never turns it on) and the strategy is one of
    ``strategies``."""

    min_per_class: NonNegativeInt | None = None
    strategies: list[StrategyName] = Field(default_factory=lambda: list(ALL_STRATEGIES))


class MixRule(RecipeRule):
    alpha: float = Field(default=0.2, gt=0)  # Beta(alpha, alpha)


class PolicyRule(RecipeRule):
    policy: Literal["trivial", "randaugment", "autoaugment"] = "trivial"


class ErasingRule(RecipeRule):
    probability: Fraction = 0.25


class EMARule(RecipeRule):
    decay: float = Field(default=0.998, gt=0, lt=1)
    warmup: bool = True


class LayerDecayRule(RecipeRule):
    factor: float = Field(default=0.7, gt=0, lt=1)


class RecipeDefaults(Schema):
    """The training recipe the plan chooses (``plan["recipe"]``, docs/strategy.md). A
    ``finetune.*`` value other than its default is the user's and wins over the plan."""

    enabled: bool = True  # false: only finetune.* decides (every ingredient as set there)
    class_balance: Literal["auto", "none", "weights", "sampler"] = "auto"
    imbalance_ratio: float = Field(default=3.0, ge=1)  # auto: weights above this largest/smallest
    mixup: MixRule = Field(default_factory=lambda: MixRule(min_per_class=500, alpha=0.2))
    cutmix: MixRule = Field(default_factory=lambda: MixRule(alpha=1.0))
    policy: PolicyRule = Field(default_factory=PolicyRule)
    random_erasing: ErasingRule = Field(default_factory=ErasingRule)
    ema: EMARule = Field(default_factory=EMARule)
    layer_decay: LayerDecayRule = Field(default_factory=lambda: LayerDecayRule(
        strategies=["partial_finetune", "full_finetune"]))
    lr_find: RecipeRule = Field(default_factory=lambda: RecipeRule(strategies=["from_scratch"]))


class StrategyParams(Schema):
    mode: Literal["auto", "matrix", "pilot"] = "auto"
    auto: AutoMode = Field(default_factory=AutoMode)
    pilot: PilotSettings = Field(default_factory=PilotSettings)
    recipe: RecipeDefaults = Field(default_factory=RecipeDefaults)
    override: Literal["auto", StrategyName] = "auto"
    size: SizeThresholds = Field(default_factory=SizeThresholds)
    similarity: SimilarityThreshold = Field(default_factory=SimilarityThreshold)
    partial: PartialFinetune = Field(default_factory=PartialFinetune)
    drop_last_blocks: NonNegativeInt = 0
    training: StrategyTraining = Field(default_factory=StrategyTraining)

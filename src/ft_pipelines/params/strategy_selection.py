"""``strategy``: dataset size x similarity -> strategy, and how each strategy trains."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from ft_pipelines.core.regularizers import PlannedRegularizer
from ft_pipelines.core.utils.schema import (
    Count,
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

    @model_validator(mode="after")
    def _check_candidates(self) -> PilotSettings:
        if self.candidates != "auto" and len(set(self.candidates)) < 2:
            raise invalid("candidates", f"needs at least two strategies to compare, got "
                                        f"{self.candidates}")
        return self


class StrategyParams(Schema):
    mode: Literal["matrix", "pilot"] = "matrix"
    pilot: PilotSettings = Field(default_factory=PilotSettings)
    override: Literal["auto", StrategyName] = "auto"
    size: SizeThresholds = Field(default_factory=SizeThresholds)
    similarity: SimilarityThreshold = Field(default_factory=SimilarityThreshold)
    partial: PartialFinetune = Field(default_factory=PartialFinetune)
    drop_last_blocks: NonNegativeInt = 0
    training: StrategyTraining = Field(default_factory=StrategyTraining)

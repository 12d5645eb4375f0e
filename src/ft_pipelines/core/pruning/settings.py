"""``pruning``: how much, by which importance, and the recovery training. The schema lives
with the code that reads it (``transtailor.py``, ``frontier.py``); ``ft_pipelines.params``
composes it into the session's parameters."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ft_pipelines.core.pruning.importance import IMPORTANCE_METHODS
from ft_pipelines.core.utils.schema import (
    Count,
    LearningRate,
    NonNegativeInt,
    Schema,
    Seed,
    Weight,
    check_registered,
    invalid,
)


class DistillParams(Schema):
    """Distillation from the fine-tuned model during recovery and fine-tuning (core/pruning/
    distill.py): (1 - alpha) * CE + alpha * T^2 * KL(teacher / T || student / T)."""

    alpha: float = Field(default=0.5, ge=0, le=1)   # weight of the teacher's soft targets
    temperature: float = Field(default=4.0, gt=0)  # softens both distributions


class PruningParams(Schema):
    importance: str = "taylor_gate"           # a registered method (core/pruning/importance.py)
    # latency: onnxruntime batch-1 latency of the exported step (runtime.threads); ratio: auto only
    target: Literal["channels", "macs", "latency"] = "macs"
    # a number: that fraction of channels or MACs removed (backing off while over max_val_drop);
    # auto: the iterative search (core/pruning/frontier.py), step by step down to max_ratio
    ratio: float | Literal["auto"] = "auto"
    # auto: share of the remaining cost cut per step; 0.5 reaches max_ratio 0.75 in 2 steps, so
    # each step can afford 2 recovery epochs (1 made the search stop on noise, docs/performance.md)
    step: float = Field(default=0.5, gt=0, lt=1)
    # auto: the most of the cost the channel steps may remove; the input steps come after
    max_ratio: float = Field(default=0.75, gt=0, lt=1)
    steps: Count = 2
    # auto: after the channel steps, the search tries each of these fractions of the input size
    # (a step: recover at that size, judged like the others; rounded to 8 px, at least 32), so a
    # model over-resolved for its data ships smaller inputs; []: keep the fine-tuned input size
    input_scales: list[float] = Field(default_factory=lambda: [0.67, 0.58])
    recovery_epochs: NonNegativeInt = 2     # training after each step before it is judged
    # ... and at least this many optimiser steps: max(recovery_epochs x steps_per_epoch, this),
    # trained as whole epochs (0: epochs only). 40 = the digits demo's 2 epochs x 20 steps, so
    # the demo is unchanged and a small folder (7 steps an epoch) is not judged after 14 steps
    recovery_min_steps: NonNegativeInt = 40
    finetune_epochs: Count = 3              # importance-aware fine-tuning after the last step
    lr: LearningRate = 0.02
    anchor_alpha: Weight = 0.01             # L2-SP toward the pruned fine-tuned weights
    seed: Seed = 0
    # guards against collapse (docs/architecture.md, core/pruning/structural.py)
    max_layer_ratio: float = Field(default=0.75, gt=0, le=1)  # most of one layer's channels cut
    round_to: Count | None = 8              # pruned layers keep a multiple of this (null: any)
    min_feature_channels: Count = 32        # layers feeding the classifier keep max(this, classes)
    max_val_drop: float = Field(default=2.0, ge=0)  # validation top-1 points: more -> back off
    max_attempts: Count = 3                 # pruning tries, the ratio halved after each failure
    distill: DistillParams | None = DistillParams()  # null: recovery without a teacher

    @field_validator("importance")
    @classmethod
    def _registered_importance(cls, value: str) -> str:
        return check_registered(value, IMPORTANCE_METHODS)

    @field_validator("input_scales")
    @classmethod
    def _scales_shrink(cls, value: list[float]) -> list[float]:
        if any(not 0 < scale < 1 for scale in value):
            raise ValueError(f"each scale must be in (0, 1), got {value}: they shrink "
                             "backbone.input_size (e.g. [0.67] takes 96 px to 64)")
        return sorted(value, reverse=True)

    @field_validator("ratio", mode="before")
    @classmethod
    def _auto_or_fraction(cls, value: Any) -> Any:
        # one message naming both forms (a union would report one error per member)
        if value == "auto" or isinstance(value, bool) or not isinstance(value, int | float):
            if value != "auto":
                raise ValueError(f"must be auto or a number in (0, 1), got {value!r}")
            return value
        if value <= 0:
            raise ValueError(f"must be > 0, got {value}")
        if value >= 1:
            raise ValueError(f"must be < 1, got {value}")
        return value

    @model_validator(mode="after")
    def _latency_needs_the_search(self) -> PruningParams:
        if self.target == "latency" and self.ratio != "auto":
            raise invalid("target", "latency is measured step by step: use it with "
                          "pruning.ratio: auto (or target: macs with a fixed ratio)")
        return self

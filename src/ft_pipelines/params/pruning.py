"""``pruning``: how much, by which importance, and the recovery training."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ft_pipelines.params.base import Count, LearningRate, NonNegativeInt, Schema, Seed, Weight


class PruningParams(Schema):
    importance: Literal["taylor_gate", "l1", "random"] = "taylor_gate"
    target: Literal["channels", "macs"] = "macs"
    ratio: float = Field(default=0.55, gt=0, lt=1)  # fraction of channels or MACs removed
    steps: Count = 2
    recovery_epochs: NonNegativeInt = 1     # short training between steps
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

"""The back-off: a pruned model that loses too much validation accuracy is pruned again, less."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from ft_pipelines.core.data import ImageData
from ft_pipelines.core.evaluation.report import frontier_lines
from ft_pipelines.core.models import replace_head
from ft_pipelines.core.pruning import l1_scores, prune_and_finetune
from ft_pipelines.core.pruning import transtailor as transtailor_module
from ft_pipelines.core.pruning.frontier import frontier_figure
from ft_pipelines.core.pruning.transtailor import back_off, validation_top1
from tests.core.pruning.test_pruning import table_for
from tests.core.training.tiny import UNGUARDED_PRUNING


def fake_attempt(accuracy_at: dict[float, float]):
    calls = []

    def attempt(index: int, ratio: float):
        calls.append((index, ratio))
        return f"model@{ratio}", accuracy_at[ratio], {"macs_ratio": 1 - ratio}

    return attempt, calls


def test_back_off_halves_the_ratio_until_within_and_keeps_that_attempt() -> None:
    attempt, calls = fake_attempt({0.4: 0.80, 0.2: 0.935, 0.1: 0.95})
    kept, records, accepted = back_off(attempt, 0.4, reference=0.95, max_drop_points=2.0,
                                       max_attempts=3)
    assert calls == [(0, 0.4), (1, 0.2)]  # 0.2 loses 1.5 points: within, no third try
    assert kept == "model@0.2" and accepted
    assert [r["kept"] for r in records] == [False, True]
    assert records[0]["val_drop_points"] == pytest.approx(15.0)
    assert records[1]["macs_ratio"] == 0.8 and records[1]["within_limit"]


def test_back_off_is_bounded_and_keeps_the_best_when_none_is_within() -> None:
    attempt, calls = fake_attempt({0.4: 0.50, 0.2: 0.70, 0.1: 0.60})
    kept, records, accepted = back_off(attempt, 0.4, reference=0.95, max_drop_points=2.0,
                                       max_attempts=3)
    assert [ratio for _, ratio in calls] == [0.4, 0.2, 0.1]
    assert kept == "model@0.2" and not accepted
    assert sum(r["kept"] for r in records) == 1


def test_no_back_off_when_the_first_attempt_is_within() -> None:
    attempt, calls = fake_attempt({0.4: 0.95})
    _, records, accepted = back_off(attempt, 0.4, 0.96, 2.0, 3)
    assert len(calls) == 1 and accepted and records[0]["kept"]


def tiny_splits() -> dict[str, ImageData]:
    generator = torch.Generator().manual_seed(0)

    def split(n: int) -> ImageData:
        labels = torch.arange(n) % 3
        images = torch.randint(0, 256, (n, 3, 32, 32), generator=generator, dtype=torch.uint8)
        return ImageData(images, labels)

    return {"train": split(24), "val": split(12)}


def test_prune_and_finetune_backs_off_when_the_drop_is_forced(bundled_backbone, monkeypatch):
    model = replace_head(copy.deepcopy(bundled_backbone), 3).eval()
    model.backbone_cfg = dataclasses.replace(model.backbone_cfg, input_size=32)
    splits = tiny_splits()
    table = table_for(model, l1_scores(model), torch.randn(1, 3, 32, 32), [model.classifier])
    real = validation_top1
    # the fine-tuned reference is made perfect, so every pruned attempt falls short of it
    monkeypatch.setattr(transtailor_module, "validation_top1",
                        lambda m, data: 1.0 if m is model else real(m, data))
    params = {**UNGUARDED_PRUNING, "ratio": 0.3, "target": "macs", "steps": 1, "finetune_epochs": 1,
              "max_layer_ratio": 0.75, "round_to": 8, "min_feature_channels": 16,
              "max_val_drop": 0.0, "max_attempts": 2}
    pruned, summary, history = prune_and_finetune(model, table, splits, params)
    attempts = summary["attempts"]
    assert [a["ratio"] for a in attempts] == [0.3, 0.15]
    assert not summary["accepted"] and summary["val_top1_finetuned"] == 1.0
    kept = next(a for a in attempts if a["kept"])
    assert summary["val_top1"] == kept["val_top1"] == max(a["val_top1"] for a in attempts)
    assert attempts[1]["macs_ratio"] > attempts[0]["macs_ratio"]  # backed off: pruned less
    assert summary["macs_after"] / summary["macs_before"] == pytest.approx(kept["macs_ratio"])
    # a fixed ratio has no search steps: the frontier plot and the report's table are empty
    # (the structural step count, once also named "steps", crashed the pruning node)
    assert "steps" not in summary and frontier_lines(summary) == []
    assert frontier_figure(summary.get("steps") or []) is not None
    assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert len(history) == 1

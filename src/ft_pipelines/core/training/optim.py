"""Optimiser with two learning rates, and the learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from ft_pipelines.core.training.config import TrainConfig


def build_optimizer(
    model: nn.Module, config: TrainConfig, new_param_names: set[str], decay_exempt: set[str]
) -> torch.optim.Optimizer:
    """Two learning rates (pretrained, new); no weight decay on anchored (L2-SP) weights."""
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        kind = "new" if name in new_param_names else "pretrained"
        groups.setdefault((kind, name not in decay_exempt), []).append(p)
    if not groups:
        raise ValueError("No trainable parameter: check the plan's trainable_blocks")
    param_groups = [
        {
            "params": params,
            "base_lr": config.lr_new if kind == "new" else config.lr_pretrained,
            "weight_decay": config.weight_decay if decays else 0.0,
            "kind": kind,
        }
        for (kind, decays), params in sorted(groups.items())
    ]
    for group in param_groups:
        group["lr"] = group["base_lr"]
    if config.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=config.lr_pretrained, momentum=config.momentum)
    return torch.optim.AdamW(param_groups, lr=config.lr_pretrained)


def lr_factor(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning-rate multiplier at a global step: linear warm-up, then cosine/step/constant."""
    total = config.epochs * steps_per_epoch
    warmup = int(config.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return (step + 1) / warmup
    if config.schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if config.schedule == "step":
        return config.gamma ** ((step // steps_per_epoch) // config.step_size)
    return 1.0

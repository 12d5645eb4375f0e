"""Optimiser with two learning rates (or layer-wise rates), and the learning-rate schedule."""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from ft_pipelines.core.training.settings import TrainConfig

logger = logging.getLogger(__name__)


def block_depths(model: nn.Module) -> dict[str, int]:
    """Parameter name -> depth from the head in the model's layout (``backbone_cfg.layout``):
    1 for the last block and the tail (they train together, see ``freeze_all_but``), 2 for the
    block before it, ..., ``len(blocks) + 1`` for the stem. Parameters outside stem, blocks and
    tail (the classifier, anything the layout does not name) are not listed."""
    layout = model.backbone_cfg.layout
    units = [(layout.stem, len(layout.blocks) + 1), (layout.tail, 1)]
    units += [((path,), len(layout.blocks) - i) for i, path in enumerate(layout.blocks)]
    depths = {}
    for paths, depth in units:
        for path in paths:
            for name, _ in model.get_submodule(path).named_parameters():
                depths[f"{path}.{name}"] = depth
    return depths


def _learning_rate(config: TrainConfig, kind: str, depth: int) -> float:
    """``lr_new`` for new parameters; ``lr_pretrained x layer_decay^(depth - 1)`` with layer
    decay (the block next to the head keeps ``lr_pretrained``), else ``lr_pretrained``."""
    if kind == "new":
        return config.lr_new
    return config.lr_pretrained * (config.layer_decay or 1.0) ** (depth - 1)


def build_optimizer(
    model: nn.Module, config: TrainConfig, new_param_names: set[str], decay_exempt: set[str]
) -> torch.optim.Optimizer:
    """Two learning rates (pretrained, new), or with ``layer_decay`` one rate per block depth
    (:func:`block_depths`, :func:`_learning_rate`); no weight decay on anchored (L2-SP) weights.
    """
    depths = block_depths(model) if config.layer_decay is not None else {}
    groups: dict[tuple[str, int, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        kind = "new" if name in new_param_names else "pretrained"
        depth = 0 if kind == "new" else depths.get(name, 1)  # unnamed by the layout: top rate
        groups.setdefault((kind, depth, name not in decay_exempt), []).append(p)
    if not groups:
        raise ValueError("No trainable parameter: check the plan's trainable_blocks")
    param_groups = [
        {
            "params": params,
            "base_lr": _learning_rate(config, kind, depth),
            "weight_decay": config.weight_decay if decays else 0.0,
            "kind": kind,
            **({"depth": depth} if config.layer_decay is not None else {}),
        }
        for (kind, depth, decays), params in sorted(groups.items())
    ]
    if config.layer_decay is not None:
        logger.info("Layer-wise learning rates (decay %g): %s", config.layer_decay,
                    ", ".join(f"depth {d}: {lr:.3g}" for d, lr in sorted(
                        {g["depth"]: g["base_lr"] for g in param_groups}.items())))
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

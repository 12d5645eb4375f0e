"""Baseline channel scores with the same shape as the Taylor-gate scores: L1 filter norm, random."""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from ft_pipelines.core.pruning.graph import prunable_bn_layers

logger = logging.getLogger(__name__)


def feeding_convs(model: nn.Module) -> dict[str, nn.Conv2d]:
    """BN name -> the Conv2d registered just before it with as many output channels.

    Registration order matches data flow in torchvision and timm CNNs (conv, then its BN).
    """
    feeding: dict[str, nn.Conv2d] = {}
    last_conv: nn.Conv2d | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            last_conv = module
        elif isinstance(module, nn.BatchNorm2d):
            if last_conv is not None and last_conv.out_channels == module.num_features:
                feeding[name] = last_conv
    return feeding


def l1_scores(model: nn.Module, layer_names: list[str] | None = None) -> dict[str, Tensor]:
    """L1 norm of each output filter of the conv feeding each BN layer (baseline).

    A BN with no identifiable feeding conv falls back to ``|gamma|`` (logged).
    """
    modules = dict(model.named_modules())
    names = prunable_bn_layers(model) if layer_names is None else layer_names
    feeding = feeding_convs(model)
    scores: dict[str, Tensor] = {}
    for name in names:
        if name in feeding:
            weight = feeding[name].weight.detach()
            scores[name] = weight.abs().sum(dim=tuple(range(1, weight.dim()))).cpu()
        elif getattr(modules.get(name), "weight", None) is not None:
            logger.warning("No conv found feeding %s: scoring its channels by |gamma|", name)
            scores[name] = modules[name].weight.detach().abs().cpu()
        else:
            raise ValueError(f"Cannot L1-score layer {name!r}: no feeding conv and no BN weight.")
    return scores


def random_scores(
    model: nn.Module, layer_names: list[str] | None = None, seed: int = 0
) -> dict[str, Tensor]:
    """Uniform random channel scores (baseline), reproducible from ``seed``."""
    modules = dict(model.named_modules())
    names = prunable_bn_layers(model) if layer_names is None else layer_names
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.rand(modules[name].num_features, generator=generator) for name in names}

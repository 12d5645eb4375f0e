"""The frozen-prefix cache: run the frozen leading units once, train only the suffix."""

from __future__ import annotations

import torch
from torch import nn

from ft_pipelines.core.data import ImageData
from ft_pipelines.core.models import feature_units, forward_head
from ft_pipelines.core.utils import normalise


def frozen_prefix_length(model: nn.Module) -> int:
    """How many leading feature units have no trainable parameter (0 when no sequential view)."""
    try:
        units = feature_units(model)
    except ValueError:
        return 0
    count = 0
    for _, unit in units:
        if any(p.requires_grad for p in unit.parameters()):
            break
        count += 1
    return count


class SplitModel(nn.Module):
    """The trainable suffix of a model, fed with cached activations of its frozen prefix."""

    def __init__(self, model: nn.Module, boundary: int) -> None:
        super().__init__()
        self.model = model
        self.suffix = nn.ModuleList(unit for _, unit in feature_units(model)[boundary:])

    def forward(self, activation: torch.Tensor) -> torch.Tensor:
        for unit in self.suffix:
            activation = unit(activation)
        return forward_head(self.model, activation)


@torch.inference_mode()
def prefix_activations(
    model: nn.Module, data: ImageData, boundary: int, batch_size: int, device: torch.device
) -> torch.Tensor:
    """Run the frozen prefix once over all images (eval mode: BN running stats, no dropout)."""
    cfg = model.backbone_cfg
    prefix = nn.Sequential(*[unit for _, unit in feature_units(model)[:boundary]]).eval()
    outputs = []
    for start in range(0, len(data), batch_size):
        batch = normalise(data.images[start : start + batch_size].to(device), cfg.mean, cfg.std)
        outputs.append(prefix(batch).cpu())
    return torch.cat(outputs)

"""Thin node: load the pretrained network (a weight source or a saved model artifact)."""

from __future__ import annotations

from typing import Any

from torch import nn

from ft_pipelines.core.models import load_backbone as load_network


def load_backbone(backbone: dict[str, Any]) -> nn.Module:
    """The pretrained network every later stage starts from (saved as ``pretrained_model``)."""
    return load_network(backbone.get("source", "bundled"), backbone.get("architecture"),
                        backbone.get("weights"), backbone.get("path"),
                        int(backbone.get("input_size", 96)), backbone.get("library", "auto"))

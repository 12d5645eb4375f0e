"""Thin node: load the pretrained network (a weight source or a saved model artifact)."""

from __future__ import annotations

from torch import nn

from ft_pipelines.core.models import load_backbone as load_network
from ft_pipelines.params import BackboneParams


def load_backbone(backbone: BackboneParams) -> nn.Module:
    """The pretrained network every later stage starts from (saved as ``pretrained_model``)."""
    return load_network(backbone.source, backbone.architecture, backbone.weights, backbone.path,
                        backbone.input_size, backbone.library)

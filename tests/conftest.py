"""Shared fixtures: tiny data and the bundled backbone built once per session."""

from __future__ import annotations

import pytest
import torch

from ft_pipelines.core.models import create_backbone


@pytest.fixture(scope="session")
def bundled_backbone():
    """The real ImageNet-pretrained EfficientNet-Lite0 (offline), at a small input size."""
    return create_backbone("bundled", input_size=64)


@pytest.fixture()
def fresh_backbone(bundled_backbone):
    import copy

    return copy.deepcopy(bundled_backbone)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)

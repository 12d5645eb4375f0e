"""A tiny classifier and images for export tests: seconds, no data set needed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ft_pipelines.core.data import ImageData
from ft_pipelines.core.export.exporter import export_onnx

CLASSES = ["cat", "dog", "owl"]
MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
SIZE = 32


class TinyNet(nn.Module):
    def __init__(self, classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU6(),
            nn.Conv2d(8, 16, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def tiny_net(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    model = TinyNet()
    for module in model.modules():  # non-trivial BN statistics, so folding them is tested
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def evaluation_row(top1: float, throughput: float, recommended: bool = True) -> dict:
    """One model's row of ``evaluation_metrics``, as much of it as the ship choice reads."""
    row = {"top1": top1, "throughput": throughput, "throughput_batch": 64, "latency_ms": 1.0}
    if not recommended:
        row.update(recommended=False, not_recommended_reason="test")
    return row


def tiny_images(count: int = 24, seed: int = 0) -> ImageData:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, 3, SIZE, SIZE), dtype=torch.uint8,
                           generator=generator)
    return ImageData(images, torch.arange(count) % len(CLASSES))


@pytest.fixture()
def tiny_model() -> TinyNet:
    return tiny_net()


@pytest.fixture()
def tiny_data() -> ImageData:
    return tiny_images()


@pytest.fixture()
def tiny_onnx(tiny_model):
    return export_onnx(tiny_model, CLASSES, SIZE, MEAN, STD, source={"note": "tiny test net"})

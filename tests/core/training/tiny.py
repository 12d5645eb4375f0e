"""A tiny CNN with the same layout machinery as the real backbones, and small data with a real
class signal, shared by the training tests."""

from __future__ import annotations

import torch
from torch import nn

from ft_pipelines.core.data import ImageData
from ft_pipelines.core.models import (
    BackboneConfig,
    BackboneLayout,
    LayoutFamily,
    attach_config,
    freeze_all_but,
    register_layout,
)
from ft_pipelines.core.training import Callback, Trainer, default_callbacks


class TinyNet(nn.Module):
    """A ResNet-shaped toy: conv1/bn1/relu/maxpool, layer1..4, avgpool, fc."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.relu, self.maxpool = nn.ReLU(), nn.MaxPool2d(2)
        self.layer1 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.layer3 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16),
                                    nn.ReLU(), nn.Dropout(0.2))
        self.layer4 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(16, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def register_tiny_layout(monkeypatch) -> None:
    """TinyNet joins the layout registry as its own family (the registry is restored after)."""
    from ft_pipelines.core.models import LAYOUT_FAMILIES

    monkeypatch.setattr("ft_pipelines.core.models.layouts.LAYOUT_FAMILIES",
                        dict(LAYOUT_FAMILIES))
    register_layout("tiny_resnet", LayoutFamily(
        matches=lambda model: isinstance(model, TinyNet),
        describe=lambda model: BackboneLayout(
            "fc", ("conv1", "bn1", "relu", "maxpool"), ("layer1", "layer2", "layer3", "layer4")),
        forward_head=lambda model, fm: model.fc(torch.flatten(model.avgpool(fm), 1)),
    ))


def tiny_model(trainable_blocks="all", classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    cfg = BackboneConfig("none", "torchvision", "tiny", None, 32)
    return freeze_all_but(attach_config(TinyNet(classes), cfg), trainable_blocks)


def tiny_data(n: int = 48, seed: int = 0, signal: bool = True) -> ImageData:
    """Noise images; with ``signal``, class c has its colour channel c brighter (per image), a
    cue a CNN learns in a few epochs. Without it the labels are unrelated to the pixels."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = torch.randint(0, 128, (n, 3, 32, 32), generator=generator, dtype=torch.uint8)
    if signal:
        images[torch.arange(n), labels] += 120
    return ImageData(images, labels)


def run(model, config, checkpoint_dir=None, extra=(), signal: bool = True):
    """Train on 48 images, validate on 24 others; ``extra`` callbacks go after the defaults."""
    trainer = Trainer(model, config, callbacks=[*default_callbacks(config, checkpoint_dir),
                                                *extra])
    return trainer.fit(tiny_data(signal=signal), tiny_data(24, seed=1, signal=signal))


class Crash(Callback):
    """Simulates a run killed in the middle of an epoch (or, with ``batch=None``, right after
    the epoch's checkpoint)."""

    def __init__(self, epoch: int, batch: int | None) -> None:
        self.epoch, self.batch = epoch, batch

    def on_batch_end(self, trainer, epoch, batch, stats):
        if (epoch, batch) == (self.epoch, self.batch):
            raise KeyboardInterrupt("killed")

    def on_epoch_end(self, trainer, epoch, row):
        if self.batch is None and epoch == self.epoch:
            raise KeyboardInterrupt("killed after the checkpoint")


# The pruning settings the core pruning tests were written for: one step, none of the
# pipeline's guards (layer floors, round_to, back-off, distillation), so each test states
# exactly what it exercises; everything else is the schema's default.
UNGUARDED_PRUNING = {"steps": 1, "max_layer_ratio": 1.0, "round_to": None,
                     "min_feature_channels": 1, "max_val_drop": 100.0, "max_attempts": 1,
                     "distill": None, "lr": 0.01, "finetune_epochs": 4}

"""The architecture-layout registry: a new family joins with one entry, without renaming classes."""

import pytest
import torch
from torch import nn

from ft_pipelines.core.models import (
    BackboneConfig,
    BackboneLayout,
    LayoutFamily,
    attach_config,
    feature_units,
    forward_head,
    pooled_stages,
    register_layout,
)
from ft_pipelines.core.models.layouts import describe_layout


class ToyNet(nn.Module):
    """A family of its own: stem, two stages, a head; its class name means nothing to anyone."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.stage1 = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.ReLU())
        self.classify = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage2(self.stage1(self.stem(x)))
        return self.classify(x.mean(dim=(2, 3)))


@pytest.fixture()
def registry(monkeypatch):
    """A private copy of the registry, so the toy family does not outlive the test."""
    from ft_pipelines.core.models import LAYOUT_FAMILIES

    monkeypatch.setattr("ft_pipelines.core.models.layouts.LAYOUT_FAMILIES", dict(LAYOUT_FAMILIES))


def toy_model() -> nn.Module:
    return attach_config(ToyNet(), BackboneConfig("none", "custom", "toy", None, 16))


def test_unknown_family_falls_back_to_top_level_children(registry, caplog):
    with caplog.at_level("WARNING"):
        layout = describe_layout(ToyNet())
    assert layout == BackboneLayout("classify", blocks=("stem", "stage1", "stage2"))
    assert "register a LayoutFamily" in caplog.text
    with pytest.raises(ValueError, match="sequential"):
        feature_units(toy_model())


def test_a_registered_family_gets_its_layout_and_sequential_view(registry):
    register_layout("toy", LayoutFamily(
        matches=lambda model: isinstance(model, ToyNet),
        describe=lambda model: BackboneLayout("classify", ("stem",), ("stage1", "stage2")),
        forward_head=lambda model, fm: model.classify(fm.mean(dim=(2, 3))),
    ))
    model = toy_model().eval()
    layout = model.backbone_cfg.layout
    assert (layout.classifier, layout.blocks, layout.head_kind) == (
        "classify", ("stage1", "stage2"), "toy")
    x = torch.randn(2, 3, 16, 16)
    with torch.inference_mode():
        h = x
        for _, unit in feature_units(model):
            h = unit(h)
        assert torch.allclose(forward_head(model, h), model(x), atol=1e-6)
        for _, stage in pooled_stages(model):
            x = stage(x)
    assert x.shape == (2, 8)  # the penultimate features the classifier reads


def test_the_bundled_backbone_is_a_registered_family(bundled_backbone):
    assert bundled_backbone.backbone_cfg.layout.head_kind == "timm_efficientnet"

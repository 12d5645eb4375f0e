"""The configuration every model of this project carries (``model.backbone_cfg``), like timm's
``pretrained_cfg``: input size, mean/std, source classes and the layout later stages need."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from torch import nn

from ft_pipelines.core.models.layouts import BackboneLayout, describe_layout

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneConfig:
    """Configuration that travels with a model (``model.backbone_cfg``)."""

    source: str
    library: str
    architecture: str
    weights: str | None
    input_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    num_source_classes: int = 1000
    layout: BackboneLayout = field(default_factory=lambda: BackboneLayout(classifier=""))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackboneConfig:
        data = dict(data)
        layout = data.pop("layout", None) or {}
        layout = BackboneLayout(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in layout.items()}
        )
        data["mean"], data["std"] = tuple(data["mean"]), tuple(data["std"])
        return cls(layout=layout, **data)


def with_input_size(model: nn.Module, size: int) -> nn.Module:
    """``model`` set to take ``size`` px inputs (the weights are unchanged: a convolutional
    network with global pooling runs at any size). What reads the size follows: decoding for
    training, evaluation and predict, the export's graph, MACs and timings."""
    model.backbone_cfg = replace(model.backbone_cfg, input_size=int(size))
    return model


def attach_config(model: nn.Module, config: BackboneConfig) -> nn.Module:
    """Attach ``config`` to ``model`` with the layout read off the model as it is now."""
    model.backbone_cfg = replace(config, layout=describe_layout(model))
    return model

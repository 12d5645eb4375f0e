"""Architecture layouts: where the classifier and the block hierarchy are inside a network, and
how pooled features reach the classifier, as a registry of families.

A family is one :class:`LayoutFamily` entry: ``matches`` recognises its models, ``describe``
returns their :class:`BackboneLayout`, ``forward_head`` applies pooling + classifier to the last
feature map exactly as the model's own forward does (None: the network is not a plain CNN chain,
so no frozen-prefix cache, DELTA attention or block truncation), ``pool`` builds the module that
turns the last feature map into the classifier's input. To support a new architecture family::

    register_layout("my_net", LayoutFamily(
        matches=lambda model: isinstance(model, MyNet),
        describe=lambda model: BackboneLayout("fc", ("conv1", "bn1"), ("layer1", "layer2")),
        forward_head=lambda model, fm: model.fc(torch.flatten(model.avgpool(fm), 1)),
    ))

A model no family matches falls back to its top-level children as blocks (with a warning).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from ft_pipelines.core.utils import last_linear

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackboneLayout:
    """Where things are inside a network, as module paths in forward order."""

    classifier: str
    stem: tuple[str, ...] = ()
    blocks: tuple[str, ...] = ()
    tail: tuple[str, ...] = ()
    # The registered family (see LAYOUT_FAMILIES); None when no family matched.
    head_kind: str | None = None


#: pooling + classifier applied to the last feature map
Head = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def _global_average_pool() -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())


@dataclass(frozen=True)
class LayoutFamily:
    """One architecture family of the layout registry (see the module docstring)."""

    matches: Callable[[nn.Module], bool]
    describe: Callable[[nn.Module], BackboneLayout]
    forward_head: Head | None = None
    pool: Callable[[], nn.Module] = field(default=_global_average_pool)


#: name -> family, tried in registration order; the name is stored as ``layout.head_kind``.
LAYOUT_FAMILIES: dict[str, LayoutFamily] = {}


def register_layout(name: str, family: LayoutFamily) -> LayoutFamily:
    """Add (or replace) the family ``name``; models it matches get its layout from now on."""
    LAYOUT_FAMILIES[name] = family
    return family


class TruncatedNetwork(nn.Module):
    """What remains after dropping the last blocks: kept feature modules, pooling, a new head."""

    def __init__(self, stem: nn.Sequential, blocks: nn.Sequential, head: nn.Linear) -> None:
        super().__init__()
        self.stem = stem
        self.blocks = blocks
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.forward_features(x)), 1))


def _children_paths(model: nn.Module, prefix: str) -> tuple[str, ...]:
    parent = model.get_submodule(prefix)
    return tuple(f"{prefix}.{name}" for name, _ in parent.named_children())


def _is(model: nn.Module, class_names: tuple[str, ...], library: str) -> bool:
    return type(model).__name__ in class_names and type(model).__module__.startswith(library)


def describe_layout(model: nn.Module) -> BackboneLayout:
    """The layout of ``model`` from the first registered family that matches it."""
    for name, family in LAYOUT_FAMILIES.items():
        if family.matches(model):
            return replace(family.describe(model), head_kind=name)
    classifier = last_linear(model)
    blocks = tuple(n for n, _ in model.named_children() if n != classifier.split(".")[0])
    logger.warning("No known layout for %s: using top-level children as blocks (register a "
                   "LayoutFamily for it)", type(model).__name__)
    return BackboneLayout(classifier, blocks=blocks, head_kind=None)


def _family(model: nn.Module) -> LayoutFamily | None:
    family = LAYOUT_FAMILIES.get(model.backbone_cfg.layout.head_kind or "")
    return family if family is not None and family.forward_head is not None else None


def forward_head(model: nn.Module, feature_map: torch.Tensor) -> torch.Tensor:
    """Pool + classifier exactly as the model's own forward does after its last feature map."""
    family = _family(model)
    if family is None:
        raise ValueError(f"{type(model).__name__} has no sequential view "
                         f"(head_kind={model.backbone_cfg.layout.head_kind!r})")
    return family.forward_head(model, feature_map)


def feature_units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules whose chained application gives the last feature map (stem, blocks, tail)."""
    if _family(model) is None:
        raise ValueError(f"{type(model).__name__} cannot be split into a sequential chain")
    layout = model.backbone_cfg.layout
    return [(p, model.get_submodule(p)) for p in (*layout.stem, *layout.blocks, *layout.tail)]


def pooled_stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Feature units followed by global pooling: chained, they give the penultimate features."""
    units = feature_units(model)
    return [*units, ("pool", _family(model).pool())]


# --------------------------------------------------------------------------- built-in families


def _flat_pool_then(classifier: str, pool: str) -> Head:
    def head(model: nn.Module, feature_map: torch.Tensor) -> torch.Tensor:
        pooled = torch.flatten(getattr(model, pool)(feature_map), 1)
        return getattr(model, classifier)(pooled)

    return head


def _densenet_head(model: nn.Module, feature_map: torch.Tensor) -> torch.Tensor:
    pooled = nn.functional.adaptive_avg_pool2d(nn.functional.relu(feature_map), 1)
    return model.classifier(torch.flatten(pooled, 1))


def _timm_head(model: nn.Module, feature_map: torch.Tensor) -> torch.Tensor:
    return model.forward_head(feature_map)  # timm's own pooling, dropout and classifier


def _resnet_layout(act: str) -> Callable[[nn.Module], BackboneLayout]:
    return lambda model: BackboneLayout(
        "fc", ("conv1", "bn1", act, "maxpool"), ("layer1", "layer2", "layer3", "layer4"))


def _densenet_layout(model: nn.Module) -> BackboneLayout:
    stem = ("features.conv0", "features.norm0", "features.relu0", "features.pool0")
    blocks = tuple(p for p in _children_paths(model, "features") if p not in stem)
    return BackboneLayout("classifier", stem, blocks)


def _features_layout(model: nn.Module) -> BackboneLayout:
    paths = _children_paths(model, "features")
    return BackboneLayout(last_linear(model, "classifier"), paths[:1], paths[1:])


register_layout("truncated", LayoutFamily(
    matches=lambda model: isinstance(model, TruncatedNetwork),
    describe=lambda model: BackboneLayout("head", ("stem",), _children_paths(model, "blocks")),
    forward_head=_flat_pool_then("head", "pool"),
))
register_layout("timm_efficientnet", LayoutFamily(
    matches=lambda model: _is(model, ("EfficientNet",), "timm"),
    describe=lambda model: BackboneLayout("classifier", ("conv_stem", "bn1"),
                                          _children_paths(model, "blocks"), ("conv_head", "bn2")),
    forward_head=_timm_head,
))
register_layout("timm_resnet", LayoutFamily(
    matches=lambda model: _is(model, ("ResNet",), "timm"),
    describe=_resnet_layout("act1"),
    forward_head=_timm_head,
))
register_layout("torchvision_resnet", LayoutFamily(
    matches=lambda model: _is(model, ("ResNet",), "torchvision"),
    describe=_resnet_layout("relu"),
    forward_head=_flat_pool_then("fc", "avgpool"),
))
register_layout("torchvision_densenet", LayoutFamily(
    matches=lambda model: _is(model, ("DenseNet",), "torchvision"),
    describe=_densenet_layout,
    forward_head=_densenet_head,
    pool=lambda: nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
))
register_layout("torchvision_features", LayoutFamily(
    matches=lambda model: _is(
        model, ("MobileNetV2", "MobileNetV3", "EfficientNet", "VGG", "ConvNeXt"), "torchvision"),
    describe=_features_layout,
    forward_head=_flat_pool_then("classifier", "avgpool"),
))
register_layout("torchvision_vit", LayoutFamily(
    matches=lambda model: _is(model, ("VisionTransformer",), "torchvision"),
    describe=lambda model: BackboneLayout(
        "heads.head", ("conv_proj",), _children_paths(model, "encoder.layers"), ("encoder.ln",)),
))

"""Bare architectures by name, from torchvision or timm, with random weights."""

from __future__ import annotations

from torch import nn


def resolve_library(architecture: str, library: str = "auto") -> str:
    """``timm`` or ``torchvision`` for an architecture name; clear error when neither has it."""
    import timm
    import torchvision

    if library in ("timm", "torchvision"):
        return library
    if library != "auto":
        raise ValueError(f"backbone.library={library!r}: use 'auto', 'timm' or 'torchvision'")
    if architecture in torchvision.models.list_models(module=torchvision.models):
        return "torchvision"
    if architecture in timm.list_models():
        return "timm"
    raise ValueError(
        f"Unknown architecture {architecture!r} (backbone.architecture): it is neither a "
        "torchvision classification model (torchvision.models.list_models()) nor a timm model "
        "(timm.list_models()). Check the spelling, e.g. 'resnet18' or 'efficientnet_lite0'."
    )


def build_architecture(architecture: str, library: str, num_classes: int = 1000) -> nn.Module:
    """The bare architecture with random weights (nothing is downloaded)."""
    import timm
    import torchvision

    if library == "timm":
        return timm.create_model(architecture, pretrained=False, num_classes=num_classes)
    return torchvision.models.get_model(architecture, weights=None, num_classes=num_classes)

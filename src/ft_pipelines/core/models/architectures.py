"""Bare architectures by name, from torchvision or timm, with random weights.

Only names the installed libraries register are accepted (``timm.list_models()``,
``torchvision.models.list_models()``): timm also resolves ``hf-hub:<repo>`` and
``local-dir:<path>`` names by fetching or reading a config, which a stored artifact must never
make it do.
"""

from __future__ import annotations

import difflib
from functools import cache

from torch import nn

LIBRARIES = ("timm", "torchvision")
_LISTING = {"timm": "timm.list_models()", "torchvision": "torchvision.models.list_models()"}


@cache
def known_architectures(library: str) -> frozenset[str]:
    """Every architecture name ``library`` registers (no hub or path names)."""
    if library == "timm":
        import timm

        return frozenset(timm.list_models())
    if library == "torchvision":
        import torchvision

        return frozenset(torchvision.models.list_models(module=torchvision.models))
    raise ValueError(f"backbone.library={library!r}: use 'auto', 'timm' or 'torchvision'")


def close_matches(name: str, candidates: frozenset[str] | list[str]) -> str:
    """`` Did you mean: a, b?`` or an empty string."""
    matches = difflib.get_close_matches(str(name), sorted(candidates), n=5, cutoff=0.6)
    return f" Did you mean: {', '.join(matches)}?" if matches else ""


def check_architecture(architecture: str, library: str) -> None:
    """Raise unless ``library`` registers ``architecture`` under exactly that name."""
    known = known_architectures(library)
    if architecture not in known:
        raise ValueError(
            f"Unknown {library} architecture {architecture!r} (backbone.architecture): it is not "
            f"one of the names {_LISTING[library]} returns (hub names and paths are not "
            f"accepted).{close_matches(architecture, known)}"
        )


def resolve_library(architecture: str, library: str = "auto") -> str:
    """``timm`` or ``torchvision`` for an architecture name; clear error when neither has it."""
    if library in LIBRARIES:
        return library
    if library != "auto":
        raise ValueError(f"backbone.library={library!r}: use 'auto', 'timm' or 'torchvision'")
    for candidate in ("torchvision", "timm"):
        if architecture in known_architectures(candidate):
            return candidate
    both = known_architectures("torchvision") | known_architectures("timm")
    raise ValueError(
        f"Unknown architecture {architecture!r} (backbone.architecture): it is neither a "
        "torchvision classification model (torchvision.models.list_models()) nor a timm model "
        f"(timm.list_models()).{close_matches(architecture, both)}"
    )


def build_architecture(architecture: str, library: str, num_classes: int = 1000) -> nn.Module:
    """The bare architecture with random weights (nothing is downloaded or read from disk)."""
    check_architecture(architecture, library)
    if library == "timm":
        import timm

        return timm.create_model(architecture, pretrained=False, num_classes=num_classes)
    import torchvision

    return torchvision.models.get_model(architecture, weights=None, num_classes=num_classes)

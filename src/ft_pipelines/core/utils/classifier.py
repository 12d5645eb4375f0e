"""Finding a network's classifier: one lookup for every stage."""

from __future__ import annotations

from torch import nn


def last_linear(model: nn.Module, under: str = "") -> str:
    """Module path of the last ``nn.Linear`` (inside ``under`` when given)."""
    root = model.get_submodule(under) if under else model
    names = [n for n, m in root.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear classifier; give the classifier's module "
            "name explicitly (e.g. finetune.bss.feature_module)."
        )
    return f"{under}.{names[-1]}".strip(".") if names[-1] else under


def classifier_name(model: nn.Module) -> str:
    """The classifier's module path: from the model's layout (``backbone_cfg``) when it has one,
    otherwise the last ``nn.Linear``."""
    config = getattr(model, "backbone_cfg", None)
    if config is not None and config.layout.classifier:
        return config.layout.classifier
    return last_linear(model)


def head_parameter_names(model: nn.Module) -> set[str]:
    """The classifier's parameters (they get the ``new`` learning rate)."""
    prefix = classifier_name(model) + "."
    return {n for n, _ in model.named_parameters() if n.startswith(prefix)}

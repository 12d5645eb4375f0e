"""Helpers the regularizers share: which parameters they act on, and argument checks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

_KERNEL_MODULES = (nn.modules.conv._ConvNd, nn.Linear)
_NORM_MODULES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def kernel_parameter_names(model: nn.Module, include_norm: bool = False) -> list[str]:
    """Names of conv/linear kernels (``<module>.weight``), plus norm-layer affine parameters
    (weight and bias) when ``include_norm``. Trainability is not checked here."""
    names = []
    for module_name, module in model.named_modules():
        if isinstance(module, _KERNEL_MODULES):
            attrs = ("weight",)
        elif include_norm and isinstance(module, _NORM_MODULES):
            attrs = ("weight", "bias")
        else:
            continue
        prefix = f"{module_name}." if module_name else ""
        names += [prefix + a for a in attrs if module._parameters.get(a) is not None]
    return names


def trainable(model: nn.Module, names: Iterable[str], what: str) -> list[Tensor]:
    """The named parameters of ``model`` that currently require grad.

    Checked at every call, so weights unfrozen later (e.g. LP-FT's second phase) are included.
    """
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(
            f"{what}: the model has no parameter(s) {missing[:5]}; build the regularizer for "
            "this model (after any surgery or pruning)."
        )
    return [params[n] for n in names if params[n].requires_grad]


def sum_of_squares(tensors: Sequence[Tensor], device: torch.device) -> Tensor:
    if not tensors:
        return torch.zeros((), device=device)
    return torch.stack([t.pow(2).sum() for t in tensors]).sum()


def submodule(model: nn.Module, name: str, param: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        examples = [n for n, _ in model.named_children()][:8]
        raise ValueError(
            f"{param}: the model has no module named {name!r}; use a dotted name from "
            f"model.named_modules() (top-level modules: {examples})."
        ) from None


def check_non_negative(**values: float) -> None:
    for key, value in values.items():
        if value < 0:
            raise ValueError(f"{key} must be >= 0, got {value}.")


def check_batch(captured: Tensor | None, inputs: Tensor, who: str, what: str) -> Tensor:
    """Catch a penalty called without attach/forward, or on features of another batch."""
    if captured is None:
        raise RuntimeError(f"{who}: no {what} captured; call attach(model) and run the forward "
                           "pass on `inputs` before penalty().")
    if captured.shape[0] != inputs.shape[0]:
        raise RuntimeError(f"{who}: captured {what} have batch size {captured.shape[0]} but "
                           f"inputs have {inputs.shape[0]}; call penalty() right after the "
                           "forward pass on the same inputs.")
    return captured


def new_kernel_names(
    model: nn.Module, reference_shapes: Mapping[str, torch.Size], forced: Iterable[str]
) -> list[str]:
    """Kernels with no same-named, same-shaped counterpart in the reference, plus ``forced``."""
    forced = list(forced)
    params = dict(model.named_parameters())
    unknown = [n for n in forced if n not in params]
    if unknown:
        raise ValueError(f"new_param_names: the model has no parameter(s) {unknown}.")
    new = [
        n for n in kernel_parameter_names(model)
        if n in forced or tuple(reference_shapes.get(n, ())) != tuple(params[n].shape)
    ]
    return new + [n for n in forced if n not in new]

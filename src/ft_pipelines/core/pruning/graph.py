"""torch-pruning's dependency graph as this project uses it: which BN layers can be pruned,
which channels are coupled (one group), without changing the model's train/eval mode."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch_pruning as tp
from torch import nn

from ft_pipelines.core.utils import preserved_modes

# group roots, as in BasePruner (minus LSTM): every conv and linear layer
ROOT_MODULE_TYPES = (tp.ops.TORCH_CONV, tp.ops.TORCH_LINEAR)
GATED_ATTRIBUTE = "_ft_channel_gated"  # set by ChannelGates on hooked layers


def prunable_bn_layers(model: nn.Module, ignored: Sequence[str] = ()) -> list[str]:
    """Names of the BatchNorm2d modules (subclasses included) not under any ``ignored`` name.

    An ignored name covers the module itself and everything inside it (``"blocks.6"``).
    """
    names = dict(model.named_modules())
    for name in ignored:
        if name not in names:
            raise ValueError(
                f"Ignored layer {name!r} is not a module of the model; use a name from "
                f"model.named_modules(), e.g. {list(names)[1:4]}"
            )
    return [
        name
        for name, module in names.items()
        if isinstance(module, nn.BatchNorm2d) and not _is_under(name, ignored)
    ]


def _is_under(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def build_dependency_graph(model: nn.Module, example_inputs: torch.Tensor) -> tp.DependencyGraph:
    """Trace ``model`` into torch-pruning's dependency graph without changing its train mode.

    Tracing follows the autograd graph: frozen layers would be invisible (their channels left
    out of every group), so gradients are switched on for the trace and restored afterwards.
    """
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.requires_grad_(True)
        with preserved_modes(model):
            return tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)


def expand_modules(modules: Sequence[nn.Module]) -> list[nn.Module]:
    """Each module and all its sub-modules (what torch-pruning needs as ``ignored_layers``)."""
    return [sub for module in modules for sub in module.modules()]


def iter_prunable_groups(
    graph: tp.DependencyGraph, ignored_layers: Sequence[nn.Module]
) -> Iterator[tp.dependency.Group]:
    """Every dependency group the pruner may prune, each with full indices."""
    yield from graph.get_all_groups(
        ignored_layers=expand_modules(ignored_layers), root_module_types=ROOT_MODULE_TYPES
    )


def group_members(
    group: tp.dependency.Group, modules: dict[nn.Module, str] | set[nn.Module]
) -> Iterator[tuple[nn.Module, list[int], list[int]]]:
    """(module, its channel indices, matching root indices) for members of ``group`` in ``modules``.

    A module appears once even when it is reached twice (BN in/out pruning is one function).
    """
    seen: set[nn.Module] = set()
    for item in group:
        module = item.dep.target.module
        if module in modules and module not in seen:
            seen.add(module)
            yield module, list(item.idxs), list(item.root_idxs)

"""Structural channel pruning driven by this project's own importance scores.

Channels are really removed (torch-pruning's dependency graph rewrites the layers), so the
pruned network is smaller and faster. The scores come from an importance table
(:func:`ft_pipelines.core.pruning.importance_table`): per BatchNorm layer and channel, a
layer-normalised score (``norm_score``). Channels coupled through a residual add or a depthwise
conv form one dependency group and are scored by the sum of their members' scores, then ranked
globally and removed together.

Traps handled here (torch-pruning 1.6.1):
- its built-in Taylor importance needs ``.grad`` on weights (useless when they are frozen):
  we feed our own :class:`TableImportance`;
- building a dependency graph puts the model in eval mode: we restore every module's mode;
- a group whose channels all fall below the global threshold would be skipped entirely by the
  pruner (it refuses to empty a layer): we pin each group's best channel so at least one survives;
- pruning creates new Parameter objects: rebuild any optimizer afterwards (``recover`` must);
- the pruned model no longer matches its architecture: the model artifact saves the channel
  counts (core.models.channel_counts).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence

import pandas as pd
import torch
import torch_pruning as tp
from torch import nn

from ft_pipelines.core.pruning.graph import (
    GATED_ATTRIBUTE,
    ROOT_MODULE_TYPES,
    build_dependency_graph,
    group_members,
    iter_prunable_groups,
)
from ft_pipelines.core.utils import count_macs_params, preserved_modes

logger = logging.getLogger(__name__)

TABLE_COLUMNS = ("layer", "channel", "norm_score")
_MAX_CHANNEL_RATIO = 0.95
_BISECTION_STEPS = 8  # resolution 0.95 / 2**8, about 0.004
_MACS_TOLERANCE = 0.01


class TableImportance(tp.importance.Importance):
    """Group importance = sum of the current per-channel scores of the group's scored BN layers.

    ``scores`` maps BN module -> 1-D tensor over its *current* channels; the caller keeps it in
    sync with removed channels. Groups without any scored layer return ``None`` (never pruned).
    The best channel of each group is pinned to +inf so a group is never emptied (torch-pruning
    would otherwise skip the whole group instead of keeping one channel).
    """

    def __init__(self, scores: dict[nn.Module, torch.Tensor]) -> None:
        self.scores = scores

    @torch.no_grad()
    def __call__(self, group: tp.dependency.Group) -> torch.Tensor | None:
        total = torch.zeros(len(group[0].idxs), dtype=torch.float64)
        found = False
        for module, idxs, root_idxs in group_members(group, self.scores):
            layer_scores = self.scores[module].to(torch.float64)
            total.scatter_add_(0, torch.tensor(root_idxs), layer_scores[torch.tensor(idxs)])
            found = True
        if not found:
            return None
        total[torch.argmax(total)] = float("inf")
        return total


def _scores_from_table(model: nn.Module, table: pd.DataFrame) -> dict[nn.Module, torch.Tensor]:
    missing = [column for column in TABLE_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(
            f"Importance table lacks columns {missing}; build it with importance_table()."
        )
    modules = dict(model.named_modules())
    scores: dict[nn.Module, torch.Tensor] = {}
    for layer, layer_rows in table.groupby("layer", sort=False):
        module = modules.get(layer)
        if not isinstance(module, nn.BatchNorm2d):
            raise ValueError(f"Table layer {layer!r} is not a BatchNorm2d of the model to prune.")
        rows = layer_rows.sort_values("channel")
        if rows["channel"].tolist() != list(range(module.num_features)):
            raise ValueError(
                f"Table layer {layer!r} lists channels {len(rows)} but the model has "
                f"{module.num_features}: recompute the table on this (unpruned) model."
            )
        scores[module] = torch.tensor(rows["norm_score"].to_numpy(dtype=float))
    if not scores:
        raise ValueError("Importance table is empty: nothing to prune by.")
    return scores


def _unscored_roots(
    model: nn.Module,
    example_inputs: torch.Tensor,
    scored: set[nn.Module],
    ignored_layers: Sequence[nn.Module],
) -> list[nn.Module]:
    """Root layers of groups without any scored channel (e.g. the classifier's out-features).

    Ignoring them keeps the pruner's channel budget on the groups it can actually rank.
    """
    graph = build_dependency_graph(model, example_inputs)
    return [
        group[0].dep.target.module
        for group in iter_prunable_groups(graph, ignored_layers)
        if next(group_members(group, scored), None) is None
    ]


def _bn_names(model: nn.Module) -> dict[nn.Module, str]:
    return {m: n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}


def _prune_at_channel_ratio(
    model: nn.Module,
    table: pd.DataFrame,
    example_inputs: torch.Tensor,
    *,
    channel_ratio: float,
    steps: int,
    ignored_layers: Sequence[nn.Module],
    recover: Callable[[nn.Module, int], None] | None,
) -> dict[str, list[int]]:
    """Prune ``model`` in place; return the original indices removed per BN layer.

    ``ignored_layers`` must already include the roots of unscored groups.
    """
    scores = _scores_from_table(model, table)
    bn_names = _bn_names(model)
    original_idx = {m: torch.arange(m.num_features) for m in bn_names}
    removed: dict[str, list[int]] = {name: [] for name in bn_names.values()}
    with preserved_modes(model):
        pruner = tp.pruner.BasePruner(
            model,
            example_inputs,
            importance=TableImportance(scores),
            global_pruning=True,
            pruning_ratio=channel_ratio,
            iterative_steps=steps,
            ignored_layers=list(ignored_layers),
            root_module_types=list(ROOT_MODULE_TYPES),
        )
    for step_index in range(steps):
        with preserved_modes(model):
            for group in pruner.step(interactive=True):
                _forget_channels(group, scores, original_idx, bn_names, removed)
                group.prune()
        if recover is not None:
            recover(model, step_index)
    return {name: sorted(idxs) for name, idxs in removed.items()}


def _forget_channels(
    group: tp.dependency.Group,
    scores: dict[nn.Module, torch.Tensor],
    original_idx: dict[nn.Module, torch.Tensor],
    bn_names: dict[nn.Module, str],
    removed: dict[str, list[int]],
) -> None:
    """Drop the channels ``group`` is about to remove from the score and index tensors."""
    for module, idxs, _ in group_members(group, original_idx):
        keep = torch.ones(len(original_idx[module]), dtype=torch.bool)
        keep[idxs] = False
        removed[bn_names[module]].extend(original_idx[module][~keep].tolist())
        original_idx[module] = original_idx[module][keep]
        if module in scores:
            scores[module] = scores[module][keep]


def _macs_reduction(
    model: nn.Module,
    table: pd.DataFrame,
    example_inputs: torch.Tensor,
    *,
    channel_ratio: float,
    ignored_names: list[str],
    macs_before: int,
) -> float:
    """Fraction of MACs removed when a deep copy is pruned at ``channel_ratio``."""
    trial = copy.deepcopy(model)
    modules = dict(trial.named_modules())
    ignored = [modules[name] for name in ignored_names]
    _prune_at_channel_ratio(
        trial,
        table,
        example_inputs,
        channel_ratio=channel_ratio,
        steps=1,
        ignored_layers=ignored,
        recover=None,
    )
    macs_after, _ = count_macs_params(trial, example_inputs)
    return 1.0 - macs_after / macs_before


def _channel_ratio_for_macs(
    model: nn.Module,
    table: pd.DataFrame,
    example_inputs: torch.Tensor,
    *,
    macs_ratio: float,
    ignored_layers: Sequence[nn.Module],
    macs_before: int,
) -> float:
    """Smallest channel ratio whose pruning removes at least ``macs_ratio`` of the MACs."""
    names = {m: n for n, m in model.named_modules()}
    ignored_names = [names[m] for m in ignored_layers]

    def reduction(ratio: float) -> float:
        return _macs_reduction(
            model,
            table,
            example_inputs,
            channel_ratio=ratio,
            ignored_names=ignored_names,
            macs_before=macs_before,
        )

    low, high = 0.0, _MAX_CHANNEL_RATIO
    reached = reduction(high)
    if reached < macs_ratio:
        raise ValueError(
            f"Cannot remove {macs_ratio:.0%} of MACs: pruning {high:.0%} of channels removes "
            f"only {reached:.1%}. Lower 'ratio' or prune fewer layers as ignored."
        )
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2
        reached = reduction(middle)
        if reached >= macs_ratio:
            high = middle
            if reached - macs_ratio < _MACS_TOLERANCE:
                break  # close enough: each trial costs a full prune of a copy
        else:
            low = middle
    logger.info("Channel ratio %.4f removes >= %.1f%% of MACs", high, 100 * macs_ratio)
    return high


def _bn_channels(model: nn.Module) -> dict[str, int]:
    return {name: module.num_features for module, name in _bn_names(model).items()}


def _check_pruning_arguments(
    model: nn.Module, ratio: float, target: str, steps: int, ignored_layers: Sequence[nn.Module]
) -> None:
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"Pruning ratio must be in (0, 1), got {ratio}.")
    if target not in ("channels", "macs"):
        raise ValueError(f"Pruning target must be 'channels' or 'macs', got {target!r}.")
    if steps < 1:
        raise ValueError(f"Pruning steps must be >= 1, got {steps}.")
    gated = [n for n, m in model.named_modules() if getattr(m, GATED_ATTRIBUTE, False)]
    if gated:
        raise ValueError(
            f"Layers {gated[:3]} still carry ChannelGates hooks: "
            "call gates.remove() before pruning."
        )
    modules = set(model.modules())
    if any(layer not in modules for layer in ignored_layers):
        raise ValueError("An ignored layer is not a module of the model being pruned.")


def prune_by_importance(
    model: nn.Module,
    table: pd.DataFrame,
    example_inputs: torch.Tensor,
    ratio: float,
    *,
    target: str = "channels",
    steps: int = 1,
    ignored_layers: Sequence[nn.Module] = (),
    recover: Callable[[nn.Module, int], None] | None = None,
) -> dict:
    """Remove the least important channel groups of ``model`` in place.

    ``target="channels"``: ``ratio`` is torch-pruning's global channel ratio;
    ``target="macs"``: ``ratio`` is the fraction of MACs to remove (the channel ratio is found by
    bisection on deep copies). Pruning runs in ``steps`` steps with ``recover(model, step_index)``
    (0-based) after each; the scores stay those of the table (not recomputed between steps).
    Groups without scored channels, such as the classifier's out-features, are never pruned.
    Remove any :class:`ChannelGates` hooks before pruning. Returns a summary dict.
    """
    _check_pruning_arguments(model, ratio, target, steps, ignored_layers)
    # torch-pruning traces autograd: frozen layers must take part (see build_dependency_graph)
    model.requires_grad_(True)
    scored = set(_scores_from_table(model, table))
    ignored_layers = list(ignored_layers) + _unscored_roots(
        model, example_inputs, scored, ignored_layers
    )
    macs_before, params_before = count_macs_params(model, example_inputs)
    channels_before = _bn_channels(model)
    channel_ratio = ratio
    if target == "macs":
        channel_ratio = _channel_ratio_for_macs(
            model,
            table,
            example_inputs,
            macs_ratio=ratio,
            ignored_layers=ignored_layers,
            macs_before=macs_before,
        )
    removed = _prune_at_channel_ratio(
        model,
        table,
        example_inputs,
        channel_ratio=channel_ratio,
        steps=steps,
        ignored_layers=ignored_layers,
        recover=recover,
    )
    macs_after, params_after = count_macs_params(model, example_inputs)
    channels_after = _bn_channels(model)
    logger.info(
        "Pruned at channel ratio %.3f: MACs %d -> %d, params %d -> %d",
        *(channel_ratio, macs_before, macs_after, params_before, params_after),
    )
    return {
        "target": target,
        "ratio": ratio,
        "channel_ratio": channel_ratio,
        "steps": steps,
        "macs_before": macs_before,
        "macs_after": macs_after,
        "params_before": params_before,
        "params_after": params_after,
        "layers": {name: [channels_before[name], channels_after[name]] for name in channels_before},
        "removed_channels": {name: idxs for name, idxs in removed.items() if idxs},
    }

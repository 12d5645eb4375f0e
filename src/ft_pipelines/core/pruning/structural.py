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
  pruner (it refuses to empty a layer), and its ``max_pruning_ratio`` only stops a layer from
  being pruned again once past the cap, not in the step that crosses it: we pin each group's
  best channels (its *floor*, see :func:`channel_floors`) so they always survive;
- ``round_to`` rounds the channels a pruned layer keeps *down* to a multiple: floors are
  rounded *up* to a multiple so the rounding never goes below them. A layer whose original
  count is not a multiple keeps that count while untouched and becomes a multiple once pruned;
  one with fewer channels than ``round_to`` is never pruned;
- pruning creates new Parameter objects: rebuild any optimizer afterwards (``recover`` must);
- the pruned model no longer matches its architecture: the model artifact saves the channel
  counts (core.models.channel_counts).
"""

from __future__ import annotations

import copy
import logging
import math
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
from ft_pipelines.core.utils import classifier_name, count_macs_params, preserved_modes

logger = logging.getLogger(__name__)

TABLE_COLUMNS = ("layer", "channel", "norm_score")
_MAX_CHANNEL_RATIO = 0.95
_BISECTION_STEPS = 8  # resolution 0.95 / 2**8, about 0.004
_MACS_TOLERANCE = 0.01


class PruningLimitReached(ValueError):
    """The per-layer floors leave no room for the requested ratio (the iterative search stops
    here; a fixed ratio reports it as a parameter error)."""


class TableImportance(tp.importance.Importance):
    """Group importance = sum of the current per-channel scores of the group's scored BN layers.

    ``scores`` maps BN module -> 1-D tensor over its *current* channels; the caller keeps it in
    sync with removed channels. Groups without any scored layer return ``None`` (never pruned).
    The best ``floors[module]`` channels of each group (at least one) are pinned to +inf so a
    group never drops below its floor (torch-pruning would otherwise skip a group it would
    empty, or let one step cut a layer past its cap).
    """

    def __init__(self, scores: dict[nn.Module, torch.Tensor],
                 floors: dict[nn.Module, int] | None = None) -> None:
        self.scores = scores
        self.floors = floors or {}

    @torch.no_grad()
    def __call__(self, group: tp.dependency.Group) -> torch.Tensor | None:
        total = torch.zeros(len(group[0].idxs), dtype=torch.float64)
        pinned = 0
        for module, idxs, root_idxs in group_members(group, self.scores):
            layer_scores = self.scores[module].to(torch.float64)
            total.scatter_add_(0, torch.tensor(root_idxs), layer_scores[torch.tensor(idxs)])
            pinned = max(pinned, self.floors.get(module, 1))
        if pinned == 0:
            return None
        total[torch.topk(total, min(pinned, len(total))).indices] = float("inf")
        return total


def _round_up(count: int, multiple: int | None) -> int:
    return count if not multiple else -(-count // multiple) * multiple


def _classifier_feeders(model: nn.Module, graph: tp.DependencyGraph) -> set[nn.Module]:
    """Modules whose output channels are the classifier's input features (its in-channel group)."""
    classifier = model.get_submodule(classifier_name(model))
    if not isinstance(classifier, nn.Linear):
        return set()
    group = graph.get_pruning_group(classifier, tp.prune_linear_in_channels, idxs=[0])
    return {item.dep.target.module for item in group}


def channel_floors(model: nn.Module, example_inputs: torch.Tensor, layers: Sequence[nn.Module],
                   *, max_layer_ratio: float = 1.0, round_to: int | None = None,
                   feature_floor: int = 1, graph: tp.DependencyGraph | None = None,
                   original_channels: dict[nn.Module, int] | None = None
                   ) -> dict[nn.Module, int]:
    """Fewest channels each BN layer in ``layers`` keeps: at most ``max_layer_ratio`` of its
    channels go, and the layers feeding the classifier keep at least ``feature_floor``; both
    rounded up to ``round_to`` and capped at the layer's own count. Computed on the unpruned
    model (the caps refer to original counts); ``graph``, the model's dependency graph when the
    caller has traced it already; ``original_channels``, the counts the caps refer to when the
    model was pruned before (iterative pruning), by BN module."""
    feeders = set()
    if feature_floor > 1:
        feeders = _classifier_feeders(model, graph or build_dependency_graph(model, example_inputs))
    floors = {}
    for module in layers:
        original = (original_channels or {}).get(module, module.num_features)
        floor = max(1, math.ceil(original * (1.0 - max_layer_ratio) - 1e-9))
        if module in feeders:
            floor = max(floor, feature_floor)
        floors[module] = min(module.num_features, _round_up(floor, round_to))
    return floors


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
    graph: tp.DependencyGraph,
    scored: set[nn.Module],
    ignored_layers: Sequence[nn.Module],
) -> list[nn.Module]:
    """Root layers of groups without any scored channel (e.g. the classifier's out-features).

    Ignoring them keeps the pruner's channel budget on the groups it can actually rank.
    """
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
    floors: dict[str, int],
    round_to: int | None,
) -> dict[str, list[int]]:
    """Prune ``model`` in place; return the original indices removed per BN layer.

    ``ignored_layers`` must already include the roots of unscored groups; ``floors`` (by BN
    name, from :func:`channel_floors`) are the channels each layer keeps at least.
    """
    scores = _scores_from_table(model, table)
    bn_names = _bn_names(model)
    original_idx = {m: torch.arange(m.num_features) for m in bn_names}
    removed: dict[str, list[int]] = {name: [] for name in bn_names.values()}
    module_floors = {m: floors.get(name, 1) for m, name in bn_names.items()}
    with preserved_modes(model):
        pruner = tp.pruner.BasePruner(
            model,
            example_inputs,
            importance=TableImportance(scores, module_floors),
            global_pruning=True,
            pruning_ratio=channel_ratio,
            iterative_steps=steps,
            ignored_layers=list(ignored_layers),
            root_module_types=list(ROOT_MODULE_TYPES),
            round_to=round_to,
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
    floors: dict[str, int],
    round_to: int | None,
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
        floors=floors,
        round_to=round_to,
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
    floors: dict[str, int],
    round_to: int | None,
    max_channel_ratio: float,
    tolerance: float = _MACS_TOLERANCE,
) -> float:
    """Smallest channel ratio whose pruning (floors and rounding included) removes at least
    ``macs_ratio`` of the MACs (at most ``tolerance`` more)."""
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
            floors=floors,
            round_to=round_to,
        )

    low, high = 0.0, max_channel_ratio
    reached = reduction(high)
    if reached < macs_ratio:
        raise PruningLimitReached(
            f"Cannot remove {macs_ratio:.0%} of MACs: pruning {high:.0%} of channels (the most "
            f"the per-layer floors allow) removes only {reached:.1%}. Lower pruning.ratio or "
            "raise pruning.max_layer_ratio."
        )
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2
        reached = reduction(middle)
        if reached >= macs_ratio:
            high = middle
            if reached - macs_ratio < tolerance:
                break  # close enough: each trial costs a full prune of a copy
        else:
            low = middle
    logger.info("Channel ratio %.4f removes >= %.1f%% of MACs", high, 100 * macs_ratio)
    return high


def _bn_channels(model: nn.Module) -> dict[str, int]:
    return {name: module.num_features for module, name in _bn_names(model).items()}


def _max_channel_ratio(
    model: nn.Module,
    graph: tp.DependencyGraph,
    floors: dict[str, int],
    ignored_layers: Sequence[nn.Module],
) -> float:
    """Largest global channel ratio the floors leave room for (torch-pruning ranks all scored
    groups together; past this ratio its threshold would fall on a pinned channel)."""
    bn_names = _bn_names(model)
    scored = {m for m, name in bn_names.items() if name in floors}
    total = pinned = 0
    for group in iter_prunable_groups(graph, ignored_layers):
        members = [module for module, _, _ in group_members(group, scored)]
        if members:
            total += len(group[0].idxs)
            pinned += max(floors[bn_names[module]] for module in members)
    if not total:
        return 0.0
    # half a channel short of the floors, so torch-pruning's int() rounding never reaches them
    return min(_MAX_CHANNEL_RATIO, 1.0 - (pinned + 0.5) / total)


def _check_pruning_arguments(  # noqa: PLR0917 (one check per argument)
    model: nn.Module, ratio: float, target: str, steps: int, ignored_layers: Sequence[nn.Module],
    max_layer_ratio: float, round_to: int | None,
) -> None:
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"Pruning ratio must be in (0, 1), got {ratio}.")
    if target not in ("channels", "macs"):
        raise ValueError(f"Pruning target must be 'channels' or 'macs', got {target!r}.")
    if steps < 1:
        raise ValueError(f"Pruning steps must be >= 1, got {steps}.")
    if not 0.0 < max_layer_ratio <= 1.0:
        raise ValueError(f"max_layer_ratio must be in (0, 1], got {max_layer_ratio}.")
    if round_to is not None and round_to < 1:
        raise ValueError(f"round_to must be a positive channel count or None, got {round_to}.")
    gated = [n for n, m in model.named_modules() if getattr(m, GATED_ATTRIBUTE, False)]
    if gated:
        raise ValueError(
            f"Layers {gated[:3]} still carry ChannelGates hooks: "
            "call gates.remove() before pruning."
        )
    modules = set(model.modules())
    if any(layer not in modules for layer in ignored_layers):
        raise ValueError("An ignored layer is not a module of the model being pruned.")


def prune_by_importance(  # noqa: PLR0913 (the pruning settings, each with a neutral default)
    model: nn.Module,
    table: pd.DataFrame,
    example_inputs: torch.Tensor,
    ratio: float,
    *,
    target: str = "channels",
    steps: int = 1,
    ignored_layers: Sequence[nn.Module] = (),
    recover: Callable[[nn.Module, int], None] | None = None,
    max_layer_ratio: float = 1.0,
    round_to: int | None = None,
    feature_floor: int = 1,
    original_channels: dict[str, int] | None = None,
    macs_tolerance: float = _MACS_TOLERANCE,
) -> dict:
    """Remove the least important channel groups of ``model`` in place.

    ``target="channels"``: ``ratio`` is torch-pruning's global channel ratio;
    ``target="macs"``: ``ratio`` is the fraction of MACs to remove (the channel ratio is found by
    bisection on deep copies). Pruning runs in ``steps`` steps with ``recover(model, step_index)``
    (0-based) after each; the scores stay those of the table (not recomputed between steps).
    No layer loses more than ``max_layer_ratio`` of its channels, the layers feeding the
    classifier keep at least ``feature_floor``, and every pruned layer keeps a multiple of
    ``round_to`` channels (see :func:`channel_floors`; the defaults keep one channel per group
    and no rounding). Groups without scored channels, such as the classifier's out-features, are
    never pruned. ``original_channels`` (BN name -> count) are the counts the per-layer caps
    refer to when ``model`` was pruned before (default: its own); ``macs_tolerance``, how much
    more than ``ratio`` of the MACs the channel ratio found may remove (each bisection trial
    prunes a copy: a search that measures what it got can afford a coarser one). Remove any
    :class:`ChannelGates` hooks before pruning. Returns a summary dict.
    """
    _check_pruning_arguments(model, ratio, target, steps, ignored_layers, max_layer_ratio,
                             round_to)
    # torch-pruning traces autograd: frozen layers must take part (see build_dependency_graph)
    model.requires_grad_(True)
    scored = set(_scores_from_table(model, table))
    graph = build_dependency_graph(model, example_inputs)  # of the unpruned model: traced once
    ignored_layers = list(ignored_layers) + _unscored_roots(graph, scored, ignored_layers)
    bn_names = _bn_names(model)
    floors = {bn_names[m]: n for m, n in channel_floors(
        model, example_inputs, list(scored), max_layer_ratio=max_layer_ratio, round_to=round_to,
        feature_floor=feature_floor, graph=graph,
        original_channels={m: (original_channels or {}).get(name, m.num_features)
                           for m, name in bn_names.items()}).items()}
    max_channel_ratio = _max_channel_ratio(model, graph, floors, ignored_layers)
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
            floors=floors,
            round_to=round_to,
            max_channel_ratio=max_channel_ratio,
            tolerance=macs_tolerance,
        )
    elif ratio > max_channel_ratio:
        raise PruningLimitReached(
            f"Cannot remove {ratio:.0%} of channels: the per-layer floors leave room for "
            f"{max_channel_ratio:.0%}. Lower pruning.ratio or raise pruning.max_layer_ratio."
        )
    removed = _prune_at_channel_ratio(
        model,
        table,
        example_inputs,
        channel_ratio=channel_ratio,
        steps=steps,
        ignored_layers=ignored_layers,
        recover=recover,
        floors=floors,
        round_to=round_to,
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
        "prune_steps": steps,  # torch-pruning's steps; "steps" is the frontier search's rows
        "max_layer_ratio": max_layer_ratio,
        "round_to": round_to,
        "feature_floor": feature_floor,
        "macs_before": macs_before,
        "macs_after": macs_after,
        "params_before": params_before,
        "params_after": params_after,
        "layers": {name: [channels_before[name], channels_after[name]] for name in channels_before},
        "removed_channels": {name: idxs for name, idxs in removed.items() if idxs},
    }

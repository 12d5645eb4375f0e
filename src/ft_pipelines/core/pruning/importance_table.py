"""The importance table: per BN layer and channel, raw, layer-normalised and group scores and the
global rank (channels coupled by a residual add or depthwise conv share a group)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from torch import Tensor, nn

from ft_pipelines.core.pruning.graph import (
    build_dependency_graph,
    group_members,
    iter_prunable_groups,
)


def channel_groups(
    model: nn.Module,
    example_inputs: Tensor,
    layer_names: list[str],
    ignored_layers: Sequence[nn.Module] = (),
) -> dict[str, np.ndarray]:
    """Group id of every channel of every named BN layer, from torch-pruning's dependency graph.

    Channels that are pruned together (same dependency group, same root index: residual adds,
    depthwise convs) share an id. Channels that cannot be pruned (their group contains an
    ignored layer's output channels) get -1. Remove gates first or keep them: tracing works
    either way.
    """
    modules = dict(model.named_modules())
    unknown = [name for name in layer_names if not isinstance(modules.get(name), nn.BatchNorm2d)]
    if unknown:
        raise ValueError(f"Layers {unknown} are not BatchNorm2d modules of the model.")
    wanted = {modules[name]: name for name in layer_names}
    ids = {name: np.full(modules[name].num_features, -1, dtype=np.int64) for name in layer_names}
    graph = build_dependency_graph(model, example_inputs)
    next_id = 0
    for group in iter_prunable_groups(graph, ignored_layers):
        for module, idxs, root_idxs in group_members(group, wanted):
            ids[wanted[module]][idxs] = next_id + np.asarray(root_idxs, dtype=np.int64)
        next_id += len(group[0].idxs)
    return ids


def importance_table(
    scores: dict[str, Tensor],
    scales: dict[str, Tensor] | None,
    groups: dict[str, np.ndarray],
) -> pd.DataFrame:
    """One row per (layer, channel) with raw, layer-normalised and group scores and global rank.

    ``norm_score`` = raw / l2-norm of the layer's raw scores; ``group_score`` = sum of
    ``norm_score`` over the channel's group; ``global_rank`` orders prunable channels by
    ``group_score`` (0 = least important, ties kept in row order). Channels of group -1 (not
    prunable) keep ``group_score = norm_score`` and a missing (<NA>) ``global_rank``.
    """
    frames = [_layer_rows(layer, raw, scales, groups) for layer, raw in scores.items()]
    if not frames:
        raise ValueError("No scores given: the importance table would be empty.")
    table = pd.concat(frames, ignore_index=True)
    prunable = table["group"] >= 0
    table["group_score"] = table["norm_score"]
    table.loc[prunable, "group_score"] = (
        table.loc[prunable].groupby("group")["norm_score"].transform("sum")
    )
    ranked = table.loc[prunable, "group_score"].sort_values(kind="stable").index
    rank = pd.Series(pd.NA, index=table.index, dtype="Int64")
    rank[ranked] = np.arange(len(ranked))
    table["global_rank"] = rank
    return table


def _layer_rows(
    layer: str,
    raw: Tensor,
    scales: dict[str, Tensor] | None,
    groups: dict[str, np.ndarray],
) -> pd.DataFrame:
    raw_np = raw.detach().cpu().double().numpy().reshape(-1)
    if layer not in groups or len(groups[layer]) != len(raw_np):
        raise ValueError(
            f"No channel groups of matching length for layer {layer!r}: compute groups with "
            "channel_groups() for the same layers and model."
        )
    norm = float(np.linalg.norm(raw_np))
    scale = np.full(len(raw_np), np.nan)
    if scales is not None and layer in scales:
        scale = scales[layer].detach().cpu().double().numpy().reshape(-1)
    return pd.DataFrame(
        {
            "layer": layer,
            "channel": np.arange(len(raw_np)),
            "group": np.asarray(groups[layer], dtype=np.int64),
            "scale": scale,
            "raw_score": raw_np,
            "norm_score": raw_np / norm if norm > 0 else np.zeros_like(raw_np),
        }
    )

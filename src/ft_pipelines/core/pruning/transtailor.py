"""TransTailor end to end: target-aware channel scores, structural pruning with recovery, and
importance-aware fine-tuning. Orchestration of the gates, the structural pruning and training."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ft_pipelines.core.data import ImageData
from ft_pipelines.core.pruning.baselines import feeding_convs, l1_scores, random_scores
from ft_pipelines.core.pruning.gates import ChannelGates, taylor_scores, train_gates
from ft_pipelines.core.pruning.graph import prunable_bn_layers
from ft_pipelines.core.pruning.importance_table import channel_groups, importance_table
from ft_pipelines.core.pruning.structural import prune_by_importance
from ft_pipelines.core.regularizers import L2SP
from ft_pipelines.core.training import TrainConfig, Trainer, default_callbacks
from ft_pipelines.core.utils import (
    classifier_name,
    head_parameter_names,
    model_size_bytes,
    normalise,
    resolve_device,
)

logger = logging.getLogger(__name__)
IMPORTANCE_METHODS = ("taylor_gate", "l1", "random")


def normalised_batches(model: nn.Module, data: ImageData, batch_size: int
                       ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed, normalised batches of ``data`` (re-iterable, as the gate trainer needs)."""
    cfg = model.backbone_cfg
    return [(normalise(data.images[i:i + batch_size], cfg.mean, cfg.std),
             data.labels[i:i + batch_size]) for i in range(0, len(data), batch_size)]


def _example_inputs(model: nn.Module) -> torch.Tensor:
    size = model.backbone_cfg.input_size
    return torch.randn(1, 3, size, size)


def _classifier(model: nn.Module) -> nn.Module:
    return model.get_submodule(classifier_name(model))


def score_channels(model: nn.Module, data: ImageData, method: str = "taylor_gate",
                   params: dict[str, Any] | None = None) -> pd.DataFrame:
    """Importance of every prunable channel (``taylor_gate``, or the ``l1``/``random`` baselines).

    ``taylor_gate``: a learnable scale after each BN, weights frozen, scales trained on the
    target loss, then ``|alpha * dL/dalpha|`` accumulated over every training batch.
    """
    params = dict(params or {})
    if method not in IMPORTANCE_METHODS:
        raise ValueError(f"pruning.importance={method!r}: use one of {IMPORTANCE_METHODS}")
    model = model.eval()
    layers = prunable_bn_layers(model)
    scales = None
    if method == "taylor_gate":
        device = resolve_device(params.get("device", "auto"))  # runtime.device
        batches = normalised_batches(model, data, int(params.get("batch_size", 64)))
        with ChannelGates(model, layers) as gates:
            train_gates(model, gates, batches, int(params.get("gate_epochs", 2)),
                        float(params.get("gate_lr", 0.01)), device, progress=True)
            scores = taylor_scores(model, gates, batches, device)
            scales = gates.scales()
        model.cpu()
    elif method == "l1":
        scores = l1_scores(model, layers)
    else:
        scores = random_scores(model, layers, int(params.get("seed", 0)))
    groups = channel_groups(model, _example_inputs(model), layers, [_classifier(model)])
    return importance_table(scores, scales, groups)


def importance_strength(model: nn.Module, table: pd.DataFrame,
                        removed: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """L2-SP anchor strength per surviving output channel of each conv feeding a scored BN.

    Proportional to the channel's layer-normalised importance, scaled to mean 1 per layer, so
    important filters are held close to their fine-tuned values and weak ones may move.
    """
    param_names = {module: name for name, module in model.named_modules()}
    strength = {}
    for bn_name, conv in feeding_convs(model).items():
        rows = table[table["layer"] == bn_name].sort_values("channel")
        if rows.empty:
            continue
        keep = np.setdiff1d(rows["channel"].to_numpy(), np.asarray(removed.get(bn_name, []),
                                                                    dtype=np.int64))
        scores = rows.set_index("channel").loc[keep, "norm_score"].to_numpy(dtype=np.float64)
        if len(scores) != conv.out_channels or scores.mean() <= 0:
            continue
        strength[f"{param_names[conv]}.weight"] = torch.tensor(scores / scores.mean(),
                                                               dtype=torch.float32)
    return strength


def _train(model: nn.Module, splits: dict[str, ImageData], config: TrainConfig,
           regularizer: Any = None, checkpoint_dir: Path | None = None) -> pd.DataFrame:
    trainer = Trainer(model, config, regularizer, default_callbacks(config, checkpoint_dir),
                      head_parameter_names(model))
    return trainer.fit(splits["train"], splits["val"])


def prune_and_finetune(model: nn.Module, table: pd.DataFrame, splits: dict[str, ImageData],
                       params: dict[str, Any], checkpoint_dir: Path | None = None
                       ) -> tuple[nn.Module, dict[str, Any], pd.DataFrame]:
    """Prune a copy of ``model`` in ``steps`` with short recovery, then importance-aware FT."""
    model = copy.deepcopy(model).cpu()
    model.requires_grad_(True)  # every surviving filter may adapt to its pruned neighbours
    size_before = model_size_bytes(model)
    lr = float(params.get("lr", 0.01))
    seed = int(params.get("seed", 0))
    runtime = {k: params[k] for k in ("device", "precision") if k in params}  # runtime.*

    def recover(pruned: nn.Module, step: int) -> None:
        if step + 1 < int(params.get("steps", 1)) and int(params.get("recovery_epochs", 1)) > 0:
            config = TrainConfig(epochs=int(params.get("recovery_epochs", 1)), lr_pretrained=lr,
                                 lr_new=lr, seed=seed + 100 + step, progress=False, **runtime)
            _train(pruned, splits, config)
            pruned.cpu()

    summary = prune_by_importance(model, table, _example_inputs(model),
                                  float(params.get("ratio", 0.3)),
                                  target=params.get("target", "channels"),
                                  steps=int(params.get("steps", 1)),
                                  ignored_layers=[_classifier(model)], recover=recover)
    anchor = {k: v.detach().clone() for k, v in model.state_dict().items()}
    regularizer = L2SP(model, anchor, alpha=float(params.get("anchor_alpha", 0.01)), beta=0.0,
                       channel_strength=importance_strength(model, table,
                                                            summary["removed_channels"]))
    config = TrainConfig(epochs=int(params.get("finetune_epochs", 4)), lr_pretrained=lr,
                         lr_new=lr, seed=seed, warmup_epochs=0.0, **runtime)
    history = _train(model, splits, config, regularizer, checkpoint_dir)
    summary.update({"importance": params.get("importance", "taylor_gate"),
                    "size_bytes_before": size_before, "size_bytes_after": model_size_bytes(model)})
    summary.pop("removed_channels")  # original indices: large, and derivable from the table
    return model.cpu(), summary, history

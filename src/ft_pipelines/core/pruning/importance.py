"""Channel importance methods, one registry entry each: TransTailor's ``taylor_gate`` (gates
trained on the target loss, then ``|alpha * dL/dalpha|``) and the ``l1`` / ``random``
baselines. An entry is a name, whether it needs data, and a scorer; ``pruning.importance``
accepts every registered name. To add one: a module with a scorer and one
``register_importance(...)`` line (docs/architecture.md, "How to add")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from ft_pipelines.core.data import ImageData
from ft_pipelines.core.pruning.baselines import l1_scores, random_scores
from ft_pipelines.core.pruning.gates import ChannelGates, taylor_scores, train_gates
from ft_pipelines.core.pruning.graph import prunable_bn_layers
from ft_pipelines.core.pruning.importance_table import channel_groups, importance_table
from ft_pipelines.core.training import run_data_parallel, world
from ft_pipelines.core.utils import classifier_name, normalise, resolve_device
from ft_pipelines.core.utils.registry import Registry
from ft_pipelines.core.utils.runtime import RuntimeParams
from ft_pipelines.core.utils.schema import Count, LearningRate, Schema, Seed

Scores = dict[str, torch.Tensor]


class ImportanceParams(Schema):
    """``importance``: TransTailor's gate training (also the seed of ``random``)."""

    gate_epochs: Count = 2
    gate_lr: LearningRate = 0.01
    batch_size: Count = 64
    max_images: Count | None = 512          # stratified subset of the training split; null: all
    seed: Seed = 0


#: scorer(model, training data, prunable BN layer names, settings, runtime)
#: -> (score per channel of each layer, the gates' scales or None)
Scorer = Callable[[nn.Module, ImageData, list[str], ImportanceParams, RuntimeParams],
                  tuple[Scores, dict | None]]


@dataclass(frozen=True)
class ImportanceMethod:
    name: str
    scorer: Scorer
    description: str = ""


IMPORTANCE_METHODS: Registry[ImportanceMethod] = Registry("pruning.importance")
register_importance = IMPORTANCE_METHODS.register  # make a method a value of pruning.importance
importance_method = IMPORTANCE_METHODS.entry


def normalised_batches(model: nn.Module, data: ImageData, batch_size: int
                       ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed, normalised batches of ``data`` (re-iterable, as the gate trainer needs)."""
    cfg = model.backbone_cfg
    return [(normalise(data.images[i:i + batch_size], cfg.mean, cfg.std),
             data.labels[i:i + batch_size]) for i in range(0, len(data), batch_size)]


def example_inputs(model: nn.Module) -> torch.Tensor:
    size = model.backbone_cfg.input_size
    return torch.randn(1, 3, size, size)


def score_channels(model: nn.Module, data: ImageData, method: str = "taylor_gate",
                   settings: ImportanceParams | dict | None = None,
                   runtime: RuntimeParams | dict | None = None) -> pd.DataFrame:
    """Importance of every prunable channel by the registered ``method``, as the importance
    table (one row per channel, with its coupled group). ``runtime`` sets the device and the
    processes ``taylor_gate`` trains its gates in (every rank gets the single-process scores)."""
    scorer = importance_method(method).scorer
    settings = ImportanceParams.model_validate(settings or {})
    runtime = RuntimeParams.model_validate(runtime or {})
    model = model.eval()
    layers = prunable_bn_layers(model)
    scores, scales = scorer(model, data, layers, settings, runtime)
    classifier = model.get_submodule(classifier_name(model))
    groups = channel_groups(model, example_inputs(model), layers, [classifier])
    return importance_table(scores, scales, groups)


def _taylor_gate(model: nn.Module, data: ImageData, layers: list[str],
                 settings: ImportanceParams, runtime: RuntimeParams) -> tuple[Scores, dict]:
    return run_data_parallel(_gate_scores, (model, data, layers, settings, runtime), runtime,
                             task="channel importance (gate training)")


def _gate_scores(model: nn.Module, data: ImageData, layers: list[str],
                 settings: ImportanceParams, runtime: RuntimeParams) -> tuple[Scores, dict]:
    """Train the gates and take the Taylor scores in this process (one rank of several when a
    process group exists); returns (scores, gate scales), the model back on the CPU."""
    device = resolve_device(runtime.device)
    batches = normalised_batches(model, data, settings.batch_size)
    with ChannelGates(model, layers) as gates:
        train_gates(model, gates, batches, settings.gate_epochs, settings.gate_lr, device,
                    progress=world()[0] == 0)
        scores = taylor_scores(model, gates, batches, device)
        scales = gates.scales()
    model.cpu()
    return scores, scales


register_importance(ImportanceMethod(
    "taylor_gate", _taylor_gate, "TransTailor: gates trained on the target loss, Taylor score"))
register_importance(ImportanceMethod(
    "l1", lambda model, _data, layers, _settings, _runtime: (l1_scores(model, layers), None),
    "L1 norm of each filter (baseline, no data)"))
register_importance(ImportanceMethod(
    "random", lambda model, _data, layers, settings, _runtime:
    (random_scores(model, layers, settings.seed), None), "uniform random (baseline, seeded)"))

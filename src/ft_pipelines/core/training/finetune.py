"""Fine-tuning as the plan says: the regulariser from the plan (+ overrides) with DELTA's
attention, the training loop with checkpoints. Orchestration only; the math is in
core.regularizers and the trainer."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from ft_pipelines.core.data import ImageData
from ft_pipelines.core.regularizers import (
    attention_from_frame,
    build_regularizer,
    delta_layers,
    regularizer_keys,
)
from ft_pipelines.core.training.callbacks import default_callbacks
from ft_pipelines.core.training.data_parallel import run_data_parallel
from ft_pipelines.core.training.settings import FinetuneParams, TrainConfig, TrainingRecipe
from ft_pipelines.core.training.trainer import Trainer
from ft_pipelines.core.utils import classifier_name, head_parameter_names
from ft_pipelines.core.utils.runtime import RuntimeParams

logger = logging.getLogger(__name__)


def resolve_regularizer(plan: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The plan's regulariser with the user's ``finetune.regularizer`` overrides on top
    (``overrides``: the keys the user set). Overriding the name drops the plan's weights (they
    belong to another regulariser)."""
    overrides = dict(overrides or {})
    planned = dict(plan["regularizer"])
    if "name" in overrides and overrides["name"] != planned["name"]:
        planned = {}
    return {**planned, **overrides}


def train_config(plan: dict[str, Any], params: FinetuneParams,
                 runtime: RuntimeParams | None = None) -> TrainConfig:
    """The one place a training's config is made: the ``finetune`` recipe, the plan's epochs
    and learning rates (unless ``finetune.epochs`` / ``lr_*`` override them), the runtime."""
    runtime = runtime or RuntimeParams()
    recipe = {name: getattr(params, name) for name in TrainingRecipe.model_fields}
    rates = plan["learning_rates"]
    return TrainConfig(
        **recipe, device=runtime.device, precision=runtime.precision,
        epochs=params.epochs or plan["epochs"],
        lr_pretrained=params.lr_pretrained or rates["pretrained"],
        lr_new=params.lr_new or rates["new"])


def finetune_model(model: nn.Module, splits: dict[str, ImageData], plan: dict[str, Any],
                   params: FinetuneParams, attention: pd.DataFrame | None = None,
                   checkpoint_dir: str | Path | None = None,
                   runtime: RuntimeParams | dict[str, Any] | None = None,
                   anchor: nn.Module | None = None) -> tuple[nn.Module, pd.DataFrame]:
    """Train ``model`` (in place) as planned; returns it and the per-epoch history.

    ``runtime`` (the ``runtime`` parameters block) sets device, precision and data parallelism:
    under torchrun the launched processes train together; with ``distributed.processes`` N > 1
    N processes are spawned here and rank 0's weights come back. ``anchor``: the L2-SP anchor /
    DELTA reference when ``model`` has already trained (a pilot trial continuing); by default
    ``model`` itself, which still holds the pretrained weights.
    """
    params = FinetuneParams.model_validate(params)  # a plain dict (scripts): schema defaults
    runtime = RuntimeParams.model_validate(runtime or {})
    args = (model, splits, plan, params, runtime, attention, checkpoint_dir, anchor)
    trained, history = run_data_parallel(_finetune_here, args, runtime, task="fine-tuning")
    if trained is not model:  # rank 0's copy from a spawned process
        model.load_state_dict(trained.state_dict())
    return model, history


def _finetune_here(model: nn.Module, splits: dict[str, ImageData], plan: dict[str, Any],  # noqa: PLR0917
                   params: FinetuneParams, runtime: RuntimeParams,
                   attention: pd.DataFrame | None, checkpoint_dir: str | Path | None,
                   anchor: nn.Module | None = None) -> tuple[nn.Module, pd.DataFrame]:
    """Fine-tuning in this process (one rank of several when a process group exists)."""
    labels = torch.cat([splits["train"].labels, splits["val"].labels])
    head = model.get_submodule(classifier_name(model))
    if int(labels.max()) >= head.out_features:
        raise ValueError(f"The data has {int(labels.max()) + 1} classes but the model's head has "
                         f"{head.out_features}: re-run backbone_surgery for these images.")
    config = train_config(plan, params, runtime)
    reg = resolve_regularizer(plan, params.regularizer.model_dump())
    name = reg.pop("name")
    keys = regularizer_keys(name)
    if "layer_names" in keys:  # feature-map regularisers: the trainable stages by default
        reg.setdefault("layer_names", delta_layers(model))
    if "new_param_names" in keys:
        # the reference below already has the new head's shape: name the head explicitly so
        # it gets beta (L2 toward zero), not the anchor toward its random initialisation
        head_kernels = [n for n in head_parameter_names(model) if n.endswith(".weight")]
        reg.setdefault("new_param_names", sorted(head_kernels))
    if params.bss is not None:
        reg["bss"] = params.bss.model_dump()
    weights = attention_from_frame(attention) if attention is not None and len(attention) else None
    # Before training, the surgered model still holds the pretrained weights: it is the L2-SP
    # anchor and the DELTA reference, with exactly the module names of the network being trained.
    # Both regularizers snapshot it (L2SP clones the anchor, DELTA deep-copies the reference).
    regularizer = build_regularizer(name, model, anchor if anchor is not None else model, reg,
                                    weights)
    trainer = Trainer(model, config, regularizer, default_callbacks(config, checkpoint_dir),
                      head_parameter_names(model))
    history = trainer.fit(splits["train"], splits["val"])
    history["regularizer"] = regularizer.name
    if trainer.lr_finding is not None:  # the LR range test's curve, for the plan's plot
        history.attrs["lr_finding"] = dataclasses.asdict(trainer.lr_finding)
    return model.cpu(), history

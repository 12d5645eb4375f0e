"""Fine-tuning as the plan says: regulariser from the plan (+ overrides), DELTA attention,
the training loop with checkpoints. Orchestration only; the math is in regularizers/training."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from ft_pipelines.core.backbones import pooled_stages
from ft_pipelines.core.regularizers import (
    attention_from_frame,
    build_regularizer,
    delta_channel_attention,
    stage_features,
    train_linear_probe,
)
from ft_pipelines.core.training import (
    ImageData,
    TrainConfig,
    Trainer,
    default_callbacks,
    normalise,
)

logger = logging.getLogger(__name__)
ATTENTION_COLUMNS = ["layer", "channel", "loss_increase", "weight"]
RUN_ONLY_KEYS = ("device", "progress", "resume", "checkpoint_dir", "delta_probe_images")


def resolve_regularizer(plan: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The plan's regulariser with the user's ``finetune.regularizer`` overrides on top.

    Overriding the name drops the plan's weights (they belong to another regulariser).
    """
    overrides = dict(overrides or {})
    planned = dict(plan["regularizer"])
    if overrides.get("name", planned["name"]) != planned["name"]:
        planned = {}
    return {**planned, **overrides}


def train_config(plan: dict[str, Any], params: dict[str, Any]) -> TrainConfig:
    """TrainConfig from the plan (epochs, learning rates) and ``finetune.*`` parameters."""
    keys = TrainConfig.__dataclass_fields__
    settings = {k: v for k, v in params.items() if k in keys}
    settings.setdefault("epochs", plan["epochs"])
    settings.setdefault("lr_pretrained", plan["learning_rates"]["pretrained"])
    settings.setdefault("lr_new", plan["learning_rates"]["new"])
    settings["augment"] = {k: v for k, v in (settings.get("augment") or {}).items() if v}
    return TrainConfig(**settings)


def trainable_blocks(model: nn.Module) -> list[str]:
    """Blocks with at least one trainable parameter (where DELTA's feature maps can move)."""
    layout = model.backbone_cfg.layout
    return [b for b in layout.blocks
            if any(p.requires_grad for p in model.get_submodule(b).parameters())]


def delta_layers(model: nn.Module) -> list[str]:
    return trainable_blocks(model) or list(model.backbone_cfg.layout.blocks[-1:])


def delta_attention(model: nn.Module, data: ImageData, seed: int = 0,
                    progress: bool = True) -> pd.DataFrame:
    """DELTA channel weights on the frozen (pretrained) network: probe, then channel ablation."""
    cfg = model.backbone_cfg
    stages_named = pooled_stages(model)
    names = [n for n, _ in stages_named]
    stages = [m for _, m in stages_named]
    layers = delta_layers(model)
    inputs = normalise(data.images, cfg.mean, cfg.std)
    features = stage_features(stages, inputs)
    num_classes = int(data.labels.max()) + 1
    probe = train_linear_probe(features, data.labels, num_classes, seed=seed)
    return delta_channel_attention(stages, [names.index(n) for n in layers], layers, probe,
                                   inputs, data.labels, progress=progress)


def new_parameter_names(model: nn.Module) -> set[str]:
    """The head's parameters: they get the ``new`` learning rate."""
    prefix = model.backbone_cfg.layout.classifier + "."
    return {n for n, _ in model.named_parameters() if n.startswith(prefix)}


def run_fingerprint(model: nn.Module, data_key: str, plan: dict, params: dict) -> str:
    """Identifies a training run: same initial weights, data, plan and settings -> same id."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    settings = {k: v for k, v in params.items() if k not in RUN_ONLY_KEYS}
    digest.update(json.dumps([data_key, plan, settings], sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def finetune_model(model: nn.Module, splits: dict[str, ImageData], plan: dict[str, Any],
                   params: dict[str, Any], attention: pd.DataFrame | None = None,
                   checkpoint_dir: str | Path | None = None) -> tuple[nn.Module, pd.DataFrame]:
    """Train ``model`` (in place) as planned; returns it and the per-epoch history."""
    labels = torch.cat([splits["train"].labels, splits["val"].labels])
    head = model.get_submodule(model.backbone_cfg.layout.classifier)
    if int(labels.max()) >= head.out_features:
        raise ValueError(f"The data has {int(labels.max()) + 1} classes but the model's head has "
                         f"{head.out_features}: re-run backbone_surgery for these images.")
    config = train_config(plan, params)
    reg = resolve_regularizer(plan, params.get("regularizer"))
    name = reg.pop("name", "none")
    if name == "delta":
        reg.setdefault("layer_names", delta_layers(model))
    if name in ("l2_sp", "delta"):
        # the reference below already has the new head's shape: name the head explicitly so
        # it gets beta (L2 toward zero), not the anchor toward its random initialisation
        head_kernels = [n for n in new_parameter_names(model) if n.endswith(".weight")]
        reg.setdefault("new_param_names", sorted(head_kernels))
    if params.get("bss"):
        reg["bss"] = dict(params["bss"])
    weights = attention_from_frame(attention) if attention is not None and len(attention) else None
    # Before training, the surgered model still holds the pretrained weights: it is the L2-SP
    # anchor and the DELTA reference, with exactly the module names of the network being trained.
    # Both regularizers snapshot it (L2SP clones the anchor, DELTA deep-copies the reference).
    regularizer = build_regularizer(name, model, model, reg, weights)
    trainer = Trainer(model, config, regularizer, default_callbacks(config),
                      new_parameter_names(model), checkpoint_dir)
    history = trainer.fit(splits["train"], splits["val"])
    history["regularizer"] = regularizer.name
    return model.cpu(), history

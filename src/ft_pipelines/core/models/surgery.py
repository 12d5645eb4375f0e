"""The three surgery moves on a backbone: freeze, replace the head, drop the last blocks.

Every move is recorded in ``model.surgery`` so that a saved model can be rebuilt (models.artifact).
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import torch
from torch import nn

from ft_pipelines.core.models.config import attach_config
from ft_pipelines.core.models.layouts import TruncatedNetwork
from ft_pipelines.core.utils import preserved_modes

logger = logging.getLogger(__name__)


def _record(model: nn.Module, **moves: Any) -> None:
    record = dict(getattr(model, "surgery", {}) or {})
    record.update(moves)
    model.surgery = record


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Swap the classifier (found from the layout, not ``model.fc``) for ``num_classes`` outputs."""
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes}: a classifier needs at least 2 classes")
    path = model.backbone_cfg.layout.classifier
    old = model.get_submodule(path)
    model.set_submodule(path, nn.Linear(old.in_features, num_classes, bias=old.bias is not None))
    _record(model, num_classes=int(num_classes))
    return model


def _feature_channels(features: nn.Module, input_size: int) -> int:
    with torch.no_grad(), preserved_modes(features, training=False):
        out = features(torch.zeros(1, 3, input_size, input_size))
    return int(out.shape[1])


def drop_last_blocks(model: nn.Module, k: int) -> nn.Module:
    """Remove the last ``k`` blocks; pooling and a new head go on what remains.

    For CNN chains this is ``nn.Sequential(stem + blocks[:-k])`` + pool + linear (the playbook's
    ``nn.Sequential(*list(model.children())[:-k])`` done on the block hierarchy). For a vision
    transformer the last encoder layers are removed in place.
    """
    if k <= 0:
        return model
    cfg = model.backbone_cfg
    layout = cfg.layout
    if k >= len(layout.blocks):
        raise ValueError(
            f"surgery.drop_last_blocks={k} but {cfg.architecture} has only "
            f"{len(layout.blocks)} blocks; use at most {len(layout.blocks) - 1}"
        )
    num_classes = model.get_submodule(layout.classifier).out_features
    dropped_before = int(getattr(model, "surgery", {}).get("drop_last_blocks", 0))
    if layout.head_kind == "torchvision_vit":
        model.encoder.layers = nn.Sequential(*list(model.encoder.layers.children())[:-k])
        new_model = model
    elif isinstance(model, TruncatedNetwork):  # truncate again in place: same key names
        model.blocks = nn.Sequential(*list(model.blocks.children())[:-k])
        channels = _feature_channels(nn.Sequential(model.stem, model.blocks), cfg.input_size)
        model.head = nn.Linear(channels, num_classes)
        new_model = model
    else:
        stem = nn.Sequential(*[model.get_submodule(p) for p in layout.stem])
        blocks = nn.Sequential(*[model.get_submodule(p) for p in layout.blocks[:-k]])
        channels = _feature_channels(nn.Sequential(stem, blocks), cfg.input_size)
        new_model = TruncatedNetwork(stem, blocks, nn.Linear(channels, num_classes))
        new_model.surgery = dict(getattr(model, "surgery", {}))
    attach_config(new_model, cfg)
    _record(new_model, drop_last_blocks=dropped_before + int(k))
    return new_model


def freeze_all_but(model: nn.Module, trainable_blocks: int | str) -> nn.Module:
    """``requires_grad=False`` everywhere except the last ``trainable_blocks`` blocks and the head.

    ``"all"`` trains everything; ``0`` trains the head only. The tail (e.g. a 1x1 head conv after
    the last block) trains together with the last block.
    """
    layout = model.backbone_cfg.layout
    if trainable_blocks == "all":
        for p in model.parameters():
            p.requires_grad_(True)
        _record(model, trainable_blocks="all")
        return model
    n = int(trainable_blocks)
    if n < 0 or n > len(layout.blocks):
        raise ValueError(
            f"trainable_blocks={n}: must be between 0 and {len(layout.blocks)} "
            f"(the number of blocks of {model.backbone_cfg.architecture}) or 'all'"
        )
    trainable = [layout.classifier, *(layout.blocks[len(layout.blocks) - n :] if n else ())]
    if n:
        trainable += list(layout.tail)
    for p in model.parameters():
        p.requires_grad_(False)
    for path in trainable:
        for p in model.get_submodule(path).parameters():
            p.requires_grad_(True)
    _record(model, trainable_blocks=n)
    return model


def reinitialize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fresh random weights everywhere (the ``from_scratch`` strategy); BN statistics reset too."""
    torch.manual_seed(seed)
    for module in model.modules():
        if module is not model and hasattr(module, "reset_parameters"):
            module.reset_parameters()
        if hasattr(module, "reset_running_stats"):
            module.reset_running_stats()
    _record(model, reinitialized=True)
    return model


def apply_surgery(
    model: nn.Module,
    num_classes: int,
    trainable_blocks: int | str = "all",
    drop_blocks: int = 0,
    reinit: bool = False,
    seed: int = 0,
) -> nn.Module:
    """The three moves in their only sensible order: truncate, new head, (re-init), freeze.

    Seeded: the new head's random initialisation is the same on every run with the same seed.
    """
    torch.manual_seed(seed)
    model = drop_last_blocks(model, drop_blocks)
    model = replace_head(model, num_classes)
    if reinit:
        model = reinitialize(model, seed)
    model = freeze_all_but(model, trainable_blocks)
    return attach_config(model, model.backbone_cfg)


def surgery_summary(model: nn.Module) -> pd.DataFrame:
    """One row per leaf-owning module: parameter counts and whether it trains."""
    rows = []
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if not own:
            continue
        total = sum(p.numel() for p in own)
        trainable = sum(p.numel() for p in own if p.requires_grad)
        rows.append(
            {
                "module": name,
                "type": type(module).__name__,
                "params": total,
                "trainable_params": trainable,
                "trains": trainable > 0,
            }
        )
    return pd.DataFrame(rows)

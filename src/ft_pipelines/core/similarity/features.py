"""One pass over the images: penultimate features, source-class probabilities, BN statistics."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ft_pipelines.core.similarity.bn_statistics import BNStatsRecorder
from ft_pipelines.core.utils import (
    Runtime,
    classifier_name,
    normalise,
    on_device,
    preserved_modes,
    resolve_device,
)


@dataclass
class Features:
    penultimate: np.ndarray  # [N, D] pooled features fed to the classifier
    source_probs: np.ndarray  # [N, K_source] softmax of the source classifier
    bn_stats: dict[str, tuple[np.ndarray, np.ndarray]]


@torch.inference_mode()
def extract_features(model: nn.Module, images: torch.Tensor, batch_size: int = 128,
                     record_bn: bool = True, progress: bool = True, device: str | None = None
                     ) -> Features:
    """Penultimate features, source-class probabilities and BN input statistics in one pass.

    ``device`` (``runtime.device``: auto | cpu | cuda[:N]) is where the pass runs; the model is
    moved there and back. None: where the model is. Always fp32: the signals are statistics
    compared with thresholds calibrated in fp32 (docs/strategy.md), and bf16 would move them.
    """
    cfg = model.backbone_cfg
    home = next(model.parameters()).device
    runtime = Runtime(home if device is None else resolve_device(device), "fp32")
    classifier = model.get_submodule(classifier_name(model))
    captured: list[torch.Tensor] = []
    hook = classifier.register_forward_pre_hook(
        lambda _m, args: captured.append(torch.flatten(args[0], 1).float().cpu()))
    probs, stats = [], {}
    recorder = BNStatsRecorder(model) if record_bn else contextlib.nullcontext()
    try:
        with (preserved_modes(model, training=False),
              on_device(model, runtime.device, channels_last=True), recorder):
            starts = range(0, len(images), batch_size)
            for start in tqdm(starts, desc="features", leave=False, disable=not progress):
                batch = runtime.to_device(images[start:start + batch_size])  # uint8: pinned
                batch = normalise(batch, cfg.mean, cfg.std).contiguous(
                    memory_format=torch.channels_last)
                probs.append(torch.softmax(model(batch).float(), dim=1).cpu())
            if record_bn:
                stats = recorder.statistics()
    finally:
        hook.remove()
    return Features(torch.cat(captured).numpy(), torch.cat(probs).numpy(), stats)

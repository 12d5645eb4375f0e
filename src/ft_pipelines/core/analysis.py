"""Feature extraction and the similarity report built from it (one pass over the images)."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ft_pipelines.core import similarity
from ft_pipelines.core.images import cached_decode, decode_images, load_records, validate_records
from ft_pipelines.core.training import ImageData, normalise

logger = logging.getLogger(__name__)


def split_image_data(table: pd.DataFrame, size: int, cache_dir: str | Path | None
                     ) -> dict[str, ImageData]:
    """Decode the ``images`` table once (cached on disk) and cut it by split."""
    if cache_dir:
        images, labels = cached_decode(table, size, cache_dir)
    else:
        images, labels = decode_images(table, size)
    splits = table["split"].to_numpy()
    return {name: ImageData(images[torch.from_numpy(splits == name)],
                            labels[torch.from_numpy(splits == name)])
            for name in ("train", "val", "test")}


def stratified_subset(data: ImageData, max_images: int | None, seed: int) -> ImageData:
    """At most ``max_images``, the same share from every class, deterministic for ``seed``."""
    if not max_images or len(data) <= max_images:
        return data
    generator = np.random.default_rng(seed)
    labels = data.labels.numpy()
    keep = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = max(1, round(len(members) * max_images / len(data)))
        keep.extend(generator.choice(members, size=min(count, len(members)), replace=False))
    index = torch.as_tensor(np.sort(keep))
    return ImageData(data.images[index], data.labels[index])


@dataclass
class Features:
    penultimate: np.ndarray  # [N, D] pooled features fed to the classifier
    source_probs: np.ndarray  # [N, K_source] softmax of the source classifier
    bn_stats: dict[str, tuple[np.ndarray, np.ndarray]]


@torch.inference_mode()
def extract_features(model: nn.Module, images: torch.Tensor, batch_size: int = 128,
                     record_bn: bool = True, progress: bool = True) -> Features:
    """Penultimate features, source-class probabilities and BN input statistics in one pass."""
    cfg = model.backbone_cfg
    classifier = model.get_submodule(cfg.layout.classifier)
    captured: list[torch.Tensor] = []
    hook = classifier.register_forward_pre_hook(
        lambda _m, args: captured.append(torch.flatten(args[0], 1).float().cpu()))
    device = next(model.parameters()).device
    model.eval()
    probs, stats = [], {}
    recorder = similarity.BNStatsRecorder(model) if record_bn else contextlib.nullcontext()
    try:
        with recorder:
            starts = range(0, len(images), batch_size)
            for start in tqdm(starts, desc="features", leave=False, disable=not progress):
                batch = normalise(images[start:start + batch_size].to(device), cfg.mean, cfg.std)
                probs.append(torch.softmax(model(batch).float(), dim=1).cpu())
            if record_bn:
                stats = recorder.statistics()
    finally:
        hook.remove()
    return Features(torch.cat(captured).numpy(), torch.cat(probs).numpy(), stats)


def load_reference_images(folder: str, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """A source-domain sample (image folder) decoded at ``size``; labels are folder indices."""
    records, _ = validate_records(load_records("image_folder", folder), "skip")
    names = sorted({r.label_name for r in records})
    table = pd.DataFrame({"image": [r.image_bytes for r in records],
                          "label": [names.index(r.label_name) for r in records]})
    images, labels = decode_images(table, size)
    return images, labels.numpy()


def reference_signals(target: Features, target_labels: np.ndarray, reference: Features,
                      reference_labels: np.ndarray, gamma: float) -> dict[str, float]:
    """Distances between target and a source sample on penultimate features."""
    a, b = reference.penultimate, target.penultimate
    return {
        "frechet_distance": similarity.frechet_distance(a, b),
        "mmd_rbf": similarity.mmd_rbf(a, b),
        "emd_domain_similarity": similarity.emd_domain_similarity(
            a, reference_labels, b, target_labels, gamma=gamma),
        "proxy_a_distance": similarity.proxy_a_distance(a, b),
    }


def similarity_report(model: nn.Module, data: ImageData, params: dict[str, Any]
                      ) -> tuple[dict[str, Any], pd.DataFrame]:
    """All similarity signals of ``data`` w.r.t. the backbone's pretraining source."""
    features = extract_features(model, data.images, int(params.get("batch_size", 128)))
    labels = data.labels.numpy()
    layers = similarity.bn_divergence(model, features.bn_stats)
    cfg = model.backbone_cfg
    metrics: dict[str, Any] = {
        "backbone": f"{cfg.library}:{cfg.architecture} ({cfg.source})",
        "input_size": cfg.input_size, "images_used": len(data),
        "bn_divergence": similarity.aggregate_divergence(layers),
        "bn_divergence_mean": float(layers["divergence"].mean()),
        "logme": similarity.logme(features.penultimate, labels),
        "h_score": similarity.h_score(features.penultimate, labels),
        "blocks": list(cfg.layout.blocks),
    }
    if cfg.source != "none":  # a random head says nothing about the source task
        metrics["leep"] = similarity.leep(features.source_probs, labels)
        metrics["nce"] = similarity.nce(features.source_probs, labels)
    folder = params.get("source_reference")
    if folder:
        ref_images, ref_labels = load_reference_images(folder, cfg.input_size)
        reference = extract_features(model, ref_images, record_bn=False)
        metrics.update(reference_signals(features, labels, reference, ref_labels,
                                         float(params.get("emd_gamma", 0.01))))
    logger.info("Similarity: BN divergence %.3f, LogME %.3f", metrics["bn_divergence"],
                metrics["logme"])
    return metrics, layers

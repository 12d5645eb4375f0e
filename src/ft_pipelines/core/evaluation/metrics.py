"""Evaluation of image classifiers: predictions and accuracy/calibration metrics.

Plain PyTorch / NumPy / scikit-learn; every returned structure is made of plain Python types
so it can go straight into a JSON dataset.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support
from torch import nn

from ft_pipelines.core.utils import normalise, on_device, preserved_modes
from ft_pipelines.serving.image_classifier import softmax

_TOP5_K = 5


def predict_logits(
    model: nn.Module,
    images_uint8: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 64,
    *,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Logits [N, K] (float64) for uint8 images [N, C, H, W], normalised batch by batch.

    Normalisation is ``(x / 255 - mean) / std`` per channel, applied on the fly so the whole
    data set is never held in float.
    """
    if images_uint8.dtype != torch.uint8 or images_uint8.ndim != 4:
        raise ValueError(
            f"predict expects a uint8 tensor [N, C, H, W]; got dtype={images_uint8.dtype}, "
            f"shape={tuple(images_uint8.shape)}. Pass the raw 0-255 images, not normalised ones."
        )
    if len(mean) != images_uint8.shape[1] or len(std) != images_uint8.shape[1]:
        raise ValueError(
            f"mean/std have {len(mean)}/{len(std)} values but the images have "
            f"{images_uint8.shape[1]} channels; give one value per channel."
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    device = torch.device(device)
    chunks: list[np.ndarray] = []
    with (preserved_modes(model, training=False), torch.inference_mode(),
          on_device(model, device, channels_last=True)):
        for start in range(0, images_uint8.shape[0], batch_size):
            batch = normalise(images_uint8[start : start + batch_size].to(device), mean, std)
            batch = batch.contiguous(memory_format=torch.channels_last)
            chunks.append(model(batch).float().cpu().numpy())
    if not chunks:
        raise ValueError("predict got zero images; the split being evaluated is empty.")
    return np.concatenate(chunks).astype(np.float64)


def predict(
    model: nn.Module,
    images_uint8: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 64,
    *,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Class probabilities [N, K] (softmax of ``predict_logits``)."""
    logits = predict_logits(model, images_uint8, mean, std, batch_size, device=device)
    return softmax(logits)


def _check_probs_labels(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    if probs.ndim != 2 or labels.ndim != 1 or probs.shape[0] != labels.shape[0]:
        raise ValueError(
            f"probs must be [N, K] and labels [N]; got {probs.shape} and {labels.shape}."
        )
    if probs.shape[0] == 0:
        raise ValueError("No samples to evaluate (N = 0); check the evaluation split.")
    if labels.min() < 0 or labels.max() >= probs.shape[1]:
        raise ValueError(
            f"labels must lie in [0, {probs.shape[1] - 1}] for {probs.shape[1]} classes; "
            f"got range [{labels.min()}, {labels.max()}]. Check the class list."
        )
    return probs, labels


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE: weighted mean |accuracy - confidence| over equal-width confidence bins (0, 1].

    Bins are closed on the right (a confidence of exactly 1/n_bins falls in the first bin).
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}.")
    probs, labels = _check_probs_labels(probs, labels)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    inner_edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    bin_index = np.searchsorted(inner_edges, confidence, side="left")
    counts = np.bincount(bin_index, minlength=n_bins)
    conf_sum = np.bincount(bin_index, weights=confidence, minlength=n_bins)
    correct_sum = np.bincount(bin_index, weights=correct, minlength=n_bins)
    # |sum(correct) - sum(conf)| / N == (|B|/N) * |acc(B) - conf(B)|, and is 0 for empty bins.
    return float(np.abs(correct_sum - conf_sum).sum() / counts.sum())


def _top_k_accuracy(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    top_k = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float((top_k == labels[:, None]).any(axis=1).mean())


def classification_metrics(probs: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    """Top-1/top-5 accuracy, macro F1, balanced accuracy (mean per-class recall over the classes
    present, as scikit-learn's), ECE, per-class scores and confusion matrix (rows = true).

    All fractions are 0-1 floats; ``top5`` is None when there are 5 classes or fewer.
    """
    probs, labels = _check_probs_labels(probs, labels)
    n_classes = probs.shape[1]
    if len(class_names) != n_classes:
        raise ValueError(
            f"{len(class_names)} class names for {n_classes} probability columns; "
            "pass the class_names the model was trained with."
        )
    predictions = probs.argmax(axis=1)
    class_ids = list(range(n_classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=class_ids, zero_division=0
    )
    per_class = {
        str(name): {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    }
    confusion = confusion_matrix(labels, predictions, labels=class_ids)
    return {
        "n_samples": int(labels.shape[0]),
        "top1": float((predictions == labels).mean()),
        "top5": _top_k_accuracy(probs, labels, _TOP5_K) if n_classes > _TOP5_K else None,
        "macro_f1": float(
            f1_score(labels, predictions, labels=class_ids, average="macro", zero_division=0)
        ),
        "balanced_accuracy": float(recall[support > 0].mean()) if support.any() else 0.0,
        "ece": expected_calibration_error(probs, labels),
        "per_class": per_class,
        "confusion": confusion.astype(int).tolist(),
    }

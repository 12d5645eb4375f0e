"""Evaluation of image classifiers: predictions, accuracy/calibration metrics, cost measures.

Plain PyTorch / NumPy / scikit-learn; every returned structure is made of plain Python types
so it can go straight into a JSON dataset.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch_pruning as tp
from safetensors.torch import save as safetensors_save
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support
from torch import nn

logger = logging.getLogger(__name__)

_TOP5_K = 5


@contextmanager
def _eval_on(model: nn.Module, device: str | torch.device) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode on ``device``; restore its training flag and device after."""
    was_training = model.training
    original_device = _model_device(model)
    model.eval()
    model.to(device)
    try:
        yield model
    finally:
        model.to(original_device)
        model.train(was_training)


def _model_device(model: nn.Module) -> torch.device:
    first = next(iter(model.parameters()), None)
    if first is None:
        first = next(iter(model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def _sync(device: torch.device) -> None:
    # CUDA kernels run asynchronously: wait for them or the timer measures only the launch.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def predict(
    model: nn.Module,
    images_uint8: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 64,
    *,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Class probabilities [N, K] for uint8 images [N, C, H, W], normalised batch by batch.

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
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    chunks: list[np.ndarray] = []
    with _eval_on(model, device), torch.inference_mode():
        for start in range(0, images_uint8.shape[0], batch_size):
            batch = images_uint8[start : start + batch_size].to(device, dtype=torch.float32)
            logits = model((batch / 255.0 - mean_t) / std_t)
            chunks.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    if not chunks:
        raise ValueError("predict got zero images; the split being evaluated is empty.")
    return np.concatenate(chunks).astype(np.float64)


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
    """Top-1/top-5 accuracy, macro F1, ECE, per-class scores and confusion matrix (rows = true).

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
        "ece": expected_calibration_error(probs, labels),
        "per_class": per_class,
        "confusion": confusion.astype(int).tolist(),
    }


def model_size_bytes(model: nn.Module) -> int:
    """Size in bytes of the model's state dict serialised with safetensors (no pickle)."""
    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int, tuple[int, ...], torch.dtype]] = set()
    for name, tensor in model.state_dict().items():
        # Tied weights share storage; safetensors refuses duplicates, and they are stored once.
        key = (
            tensor.untyped_storage().data_ptr(),
            tensor.storage_offset(),
            tuple(tensor.shape),
            tensor.dtype,
        )
        if key in seen:
            continue
        seen.add(key)
        tensors[name] = tensor.detach().cpu().contiguous().clone()
    return len(safetensors_save(tensors))


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not; shared parameters counted once)."""
    return int(sum(p.numel() for p in model.parameters()))


def count_macs(model: nn.Module, input_size: tuple[int, int, int]) -> int:
    """Multiply-accumulates of one forward pass on a single (C, H, W) input, via torch-pruning."""
    if len(input_size) != 3:
        raise ValueError(f"input_size must be (C, H, W), got {input_size}.")
    was_training = model.training
    model.eval()
    try:
        example = torch.zeros((1, *input_size), device=_model_device(model))
        macs, _ = tp.utils.count_ops_and_params(model, example)
    finally:
        model.train(was_training)
    return int(macs)


def _check_timing_args(input_size: tuple[int, int, int], batch_size: int, runs: int) -> None:
    if len(input_size) != 3:
        raise ValueError(f"input_size must be (C, H, W), got {input_size}.")
    if batch_size < 1 or runs < 1:
        raise ValueError(f"batch_size and runs must be >= 1, got {batch_size} and {runs}.")


def _timed_forward_ms(model: nn.Module, batch: torch.Tensor, warmup: int, runs: int) -> list[float]:
    """Wall time in ms of ``runs`` forward passes after ``warmup`` untimed ones."""
    timings: list[float] = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(batch)
        _sync(batch.device)
        for _ in range(runs):
            start = time.perf_counter()
            model(batch)
            _sync(batch.device)
            timings.append((time.perf_counter() - start) * 1000.0)
    return timings


def measure_latency(
    model: nn.Module,
    input_size: tuple[int, int, int],
    batch_size: int = 1,
    warmup: int = 10,
    runs: int = 50,
    *,
    device: str | torch.device = "cpu",
) -> dict:
    """Per-forward-pass latency in ms (median, 90th percentile, mean) on random input."""
    _check_timing_args(input_size, batch_size, runs)
    device = torch.device(device)
    batch = torch.randn((batch_size, *input_size), device=device)
    with _eval_on(model, device):
        timings = _timed_forward_ms(model, batch, warmup, runs)
    result = {
        "median_ms": float(statistics.median(timings)),
        "p90_ms": float(np.percentile(timings, 90)),
        "mean_ms": float(statistics.fmean(timings)),
    }
    logger.info("Latency (batch %d, %s): %s", batch_size, device, result)
    return result


def measure_throughput(
    model: nn.Module,
    input_size: tuple[int, int, int],
    batch_size: int = 64,
    warmup: int = 2,
    runs: int = 5,
    *,
    device: str | torch.device = "cpu",
) -> float:
    """Inference throughput in images per second over ``runs`` batches of ``batch_size``."""
    _check_timing_args(input_size, batch_size, runs)
    device = torch.device(device)
    batch = torch.randn((batch_size, *input_size), device=device)
    with _eval_on(model, device):
        timings = _timed_forward_ms(model, batch, warmup, runs)
    images_per_s = batch_size * runs / (sum(timings) / 1000.0)
    logger.info("Throughput (batch %d, %s): %.1f images/s", batch_size, device, images_per_s)
    return float(images_per_s)

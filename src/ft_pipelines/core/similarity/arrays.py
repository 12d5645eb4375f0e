"""Input checks shared by the similarity signals: features as float64 [N, D], labels as codes."""

from __future__ import annotations

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor
TINY = 1e-12


def as_matrix(values: ArrayLike, name: str) -> np.ndarray:
    """Return a finite float64 [N, D] array; 1-D input is read as N samples of one feature."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(
            f"{name} must be a non-empty [N, D] array, got shape {array.shape}; "
            "flatten the features per sample first."
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf; check the feature extraction.")
    return array


def encode_labels(labels: ArrayLike, n_samples: int, name: str = "labels") -> np.ndarray:
    """Map labels to 0..K-1 (sorted order of the distinct labels)."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    label_array = np.asarray(labels)
    if label_array.ndim != 1 or label_array.shape[0] != n_samples:
        raise ValueError(
            f"{name} must be a 1-D array with one label per sample ({n_samples}), "
            f"got shape {label_array.shape}."
        )
    if np.issubdtype(label_array.dtype, np.floating) and not np.all(
        label_array == np.round(label_array)
    ):
        raise ValueError(f"{name} must be integer class ids, got non-integer floats.")
    _, codes = np.unique(label_array, return_inverse=True)
    return codes.reshape(-1)


def require_classes(codes: np.ndarray, name: str, minimum: int = 2) -> int:
    n_classes = int(codes.max()) + 1
    if n_classes < minimum:
        raise ValueError(f"{name} needs at least {minimum} distinct classes, got {n_classes}.")
    return n_classes

"""Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks"): one
scalar T > 0 divides the logits, fitted on the validation split by minimising the negative
log-likelihood of softmax(logits / T). It changes no prediction (argmax is unchanged), only
how confident the probabilities are; ECE before and after shows whether it helped."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ft_pipelines.core.evaluation.metrics import classification_metrics, expected_calibration_error
from ft_pipelines.serving.image_classifier import softmax

# T outside this range means the logits carry no usable confidence (or the split is tiny):
# the bound stops the search rather than sending T to 0 or infinity on a separable split.
TEMPERATURE_RANGE = (0.05, 20.0)
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def _check(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],) or len(labels) == 0:
        raise ValueError(f"Temperature scaling needs logits [N, K] and labels [N], N >= 1; got "
                         f"{logits.shape} and {labels.shape}")
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ValueError(f"labels must lie in [0, {logits.shape[1] - 1}]")
    if not np.isfinite(logits).all():
        raise ValueError("The logits contain NaN or infinity: the model's output is broken")
    return logits, labels


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under softmax(logits / temperature)."""
    logits, labels = _check(logits, labels)
    scaled = logits / temperature
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    return float(np.mean(log_norm - shifted[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, iterations: int = 60) -> float:
    """The T in ``TEMPERATURE_RANGE`` minimising ``nll``: golden-section search on log T (the
    NLL is convex in 1/T, so unimodal in log T; no optimiser library needed)."""
    logits, labels = _check(logits, labels)
    low, high = (math.log(t) for t in TEMPERATURE_RANGE)

    def loss(log_t: float) -> float:
        return nll(logits, labels, math.exp(log_t))

    a, b = high - _GOLDEN * (high - low), low + _GOLDEN * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    for _ in range(iterations):
        if loss_a <= loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - _GOLDEN * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + _GOLDEN * (high - low)
            loss_b = loss(b)
    return float(math.exp((low + high) / 2.0))


def calibration_summary(logits: np.ndarray, labels: np.ndarray, temperature: float
                        ) -> dict[str, Any]:
    """NLL and ECE of ``logits`` before (T = 1) and after dividing by ``temperature``."""
    return {"temperature": float(temperature),
            "nll_uncalibrated": nll(logits, labels), "nll": nll(logits, labels, temperature),
            "ece_uncalibrated": expected_calibration_error(softmax(logits), labels),
            "ece": expected_calibration_error(softmax(logits, temperature), labels)}


def _not_applied_because(fitted: float, trial: dict[str, Any]) -> str | None:
    """Why the fitted temperature is not applied (None: it is): at an end of the range the
    split is (nearly) separable and the NLL has no usable minimum; a T that raises the
    validation ECE would make the probabilities the report shows worse where it was fitted."""
    if any(math.isclose(fitted, end, rel_tol=1e-2) for end in TEMPERATURE_RANGE):
        return (f"the validation NLL keeps falling to the end of the range (T={fitted:.3g}): "
                "a (nearly) separable validation split gives no usable temperature")
    if trial["ece"] > trial["ece_uncalibrated"]:
        return (f"T={fitted:.3f} lowers the validation NLL ({trial['nll_uncalibrated']:.4f} -> "
                f"{trial['nll']:.4f}) but raises its ECE ({trial['ece_uncalibrated']:.4f} -> "
                f"{trial['ece']:.4f})")
    return None


def fit_calibration(val_logits: np.ndarray, val_labels: np.ndarray) -> dict[str, Any]:
    """``fit_temperature`` on the validation split, applied only where it helps there: the
    NLL optimum inside the range that does not raise the validation ECE. Otherwise T = 1 (the
    raw softmax) and ``not_applied`` says why. ``temperature`` (and the NLL and ECE beside it)
    is the temperature applied; ``fitted_temperature`` the NLL optimum, with ``nll_fitted`` and
    ``ece_fitted``."""
    fitted = fit_temperature(val_logits, val_labels)
    trial = calibration_summary(val_logits, val_labels, fitted)
    reason = _not_applied_because(fitted, trial)
    applied = trial if reason is None else calibration_summary(val_logits, val_labels, 1.0)
    return {**applied, "fitted_temperature": fitted, "nll_fitted": trial["nll"],
            "ece_fitted": trial["ece"], "not_applied": reason,
            "split": "validation", "n_images": int(len(val_labels))}


def calibrated_scores(logits: np.ndarray, labels: np.ndarray, class_names: list[str],
                      temperature: float) -> dict[str, Any]:
    """``classification_metrics`` of softmax(logits / temperature), with ``temperature`` and
    ``ece_uncalibrated`` (the ECE of the raw softmax) beside ``ece`` (after the temperature)."""
    scores = classification_metrics(softmax(logits, temperature), labels, class_names)
    scores["ece_uncalibrated"] = expected_calibration_error(softmax(logits), labels)
    scores["temperature"] = float(temperature)
    return scores

"""Transferability estimates from features, labels and the source head (docs/references.md,
"Transferability"): LogME, LEEP, NCE, H-score. Higher = better transfer for all four."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ft_pipelines.core.similarity.arrays import (
    TINY,
    ArrayLike,
    as_matrix,
    encode_labels,
    require_classes,
)


@dataclass(frozen=True)
class LogMEResult:
    """LogME score with the per-class (one-vs-rest) fits behind it."""

    score: float  # mean over classes of log-evidence / N
    evidences: np.ndarray  # [K] log-evidence / N per class
    alphas: np.ndarray  # [K] fitted weight precision
    betas: np.ndarray  # [K] fitted noise precision


def _evidence_terms(
    alpha: float, beta: float, sing_sq: np.ndarray, proj: np.ndarray, outside_sq: float
) -> tuple[float, float, float]:
    """(gamma, ||m||^2, ||Fm - y||^2) in the SVD basis; proj = U^T y, outside = |y|^2-|proj|^2."""
    denom = alpha + beta * sing_sq
    gamma = float(np.sum(beta * sing_sq / denom))
    mean_norm_sq = float(np.sum((beta * np.sqrt(sing_sq) * proj / denom) ** 2))
    residual_sq = float(np.sum((alpha * proj / denom) ** 2)) + outside_sq
    return gamma, mean_norm_sq, residual_sq


def _fit_logme_class(
    sing_sq: np.ndarray,
    proj: np.ndarray,
    outside_sq: float,
    *,
    n_samples: int,
    dim: int,
    max_iter: int = 11,
    tol: float = 1e-3,
) -> tuple[float, float, float]:
    """MacKay fixed point for one target vector; returns (alpha, beta, log-evidence)."""
    alpha, beta = 1.0, 1.0
    for _ in range(max_iter):
        gamma, mean_norm_sq, residual_sq = _evidence_terms(alpha, beta, sing_sq, proj, outside_sq)
        new_alpha = gamma / max(mean_norm_sq, TINY)
        new_beta = max(n_samples - gamma, TINY) / max(residual_sq, TINY)
        converged = abs(new_alpha / new_beta - alpha / beta) <= tol * (alpha / beta)
        alpha, beta = new_alpha, new_beta
        if converged:
            break
    # evaluate the evidence at the final (alpha, beta), with m recomputed for them
    _, mean_norm_sq, residual_sq = _evidence_terms(alpha, beta, sing_sq, proj, outside_sq)
    # F^T F has dim - rank zero eigenvalues: each contributes log(alpha) to log|A|
    logdet = float(np.sum(np.log(alpha + beta * sing_sq))) + (dim - sing_sq.size) * np.log(alpha)
    evidence = (
        dim / 2 * np.log(alpha)
        + n_samples / 2 * np.log(beta)
        - n_samples / 2 * np.log(2 * np.pi)
        - beta / 2 * residual_sq
        - alpha / 2 * mean_norm_sq
        - logdet / 2
    )
    return alpha, beta, float(evidence)


def logme_fit(features: ArrayLike, labels: ArrayLike) -> LogMEResult:
    """LogME (You et al. 2021) with the fitted alpha/beta per class; see :func:`logme`."""
    feats = as_matrix(features, "features")
    n_samples, dim = feats.shape
    codes = encode_labels(labels, n_samples)
    n_classes = require_classes(codes, "labels")
    # one thin SVD shared by all classes; works for D > N too (rank <= min(N, D))
    left, singular, _ = np.linalg.svd(feats, full_matrices=False)
    keep = singular > singular.max(initial=0.0) * max(n_samples, dim) * np.finfo(float).eps
    if not np.any(keep):
        raise ValueError("features are all zero; LogME needs informative features.")
    left, sing_sq = left[:, keep], singular[keep] ** 2
    alphas, betas, evidences = (np.empty(n_classes) for _ in range(3))
    for cls in range(n_classes):
        y = (codes == cls).astype(np.float64)
        proj = left.T @ y
        outside_sq = max(float(y @ y - proj @ proj), 0.0)
        alphas[cls], betas[cls], evidence = _fit_logme_class(
            sing_sq, proj, outside_sq, n_samples=n_samples, dim=dim
        )
        evidences[cls] = evidence / n_samples
    return LogMEResult(float(evidences.mean()), evidences, alphas, betas)


def logme(features: ArrayLike, labels: ArrayLike) -> float:
    """LogME: mean over classes (one-vs-rest) of the maximised log-evidence / N. Higher = better."""
    return logme_fit(features, labels).score


# --------------------------------------------------------------------------------------
# LEEP, NCE, H-score
# --------------------------------------------------------------------------------------


def _as_probabilities(source_probs: ArrayLike) -> np.ndarray:
    probs = as_matrix(source_probs, "source_probs")
    if np.any(probs < 0) or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError(
            "source_probs must be non-negative rows summing to 1: apply softmax to the "
            "source head's logits first."
        )
    return probs


def leep(source_probs: ArrayLike, labels: ArrayLike) -> float:
    """LEEP (Nguyen et al. 2020): mean log-likelihood of the expected empirical predictor.

    theta = source-head probabilities [N, Z]; P(y|z) from their joint with the target labels.
    Always <= 0; higher = better transfer.
    """
    probs = _as_probabilities(source_probs)
    codes = encode_labels(labels, probs.shape[0])
    n_classes = int(codes.max()) + 1
    onehot = np.eye(n_classes)[codes]  # [N, K]
    joint = onehot.T @ probs / probs.shape[0]  # P(y, z), [K, Z]
    conditional = joint / np.maximum(joint.sum(axis=0, keepdims=True), TINY)  # P(y | z)
    expected = np.sum(probs * conditional[codes], axis=1)  # sum_z P(y_i|z) theta_z(x_i)
    return float(np.mean(np.log(np.maximum(expected, TINY))))


def nce(source_probs: ArrayLike, labels: ArrayLike) -> float:
    """NCE (Tran et al. 2019) = -H(Y | Z), Z = argmax of the source head. <= 0, higher = better."""
    probs = _as_probabilities(source_probs)
    codes = encode_labels(labels, probs.shape[0])
    source_argmax = probs.argmax(axis=1)
    counts = np.zeros((int(codes.max()) + 1, probs.shape[1]))
    np.add.at(counts, (codes, source_argmax), 1.0)
    joint = counts / counts.sum()
    marginal_z = joint.sum(axis=0, keepdims=True)
    nonzero = joint > 0
    conditional = joint[nonzero] / np.broadcast_to(marginal_z, joint.shape)[nonzero]
    return float(np.sum(joint[nonzero] * np.log(conditional)))


def h_score(features: ArrayLike, labels: ArrayLike) -> float:
    """H-score (Bao et al. 2019) = tr(pinv(cov f) @ cov(E[f|y])), a matrix product. Higher = better.

    Both covariances divide by N, so the normalisation cancels.
    """
    feats = as_matrix(features, "features")
    codes = encode_labels(labels, feats.shape[0])
    require_classes(codes, "labels")
    centered = feats - feats.mean(axis=0)
    cov_features = centered.T @ centered / feats.shape[0]
    class_means = np.stack([centered[codes == c].mean(axis=0) for c in range(codes.max() + 1)])
    conditional = class_means[codes]  # E[f | y] per sample (already centred overall)
    cov_conditional = conditional.T @ conditional / feats.shape[0]
    return float(np.trace(np.linalg.pinv(cov_features, hermitian=True) @ cov_conditional))

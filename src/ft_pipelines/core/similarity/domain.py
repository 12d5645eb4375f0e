"""Distances between the target and a source reference sample on penultimate features
(docs/references.md, "Domain distances"): FID formula, MMD, EMD domain similarity, proxy A-distance.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.linalg
from scipy.optimize import linprog
from scipy.spatial.distance import cdist

from ft_pipelines.core.similarity.arrays import ArrayLike, as_matrix, encode_labels

logger = logging.getLogger(__name__)


def _same_dims(feats_a: np.ndarray, feats_b: np.ndarray) -> None:
    if feats_a.shape[1] != feats_b.shape[1]:
        raise ValueError(
            f"Feature dimensions differ ({feats_a.shape[1]} vs {feats_b.shape[1]}); "
            "extract both samples at the same layer of the same backbone."
        )


def frechet_distance(feats_a: ArrayLike, feats_b: ArrayLike) -> float:
    """Fréchet distance between Gaussians fitted to two samples (the FID formula)."""
    sample_a, sample_b = as_matrix(feats_a, "feats_a"), as_matrix(feats_b, "feats_b")
    _same_dims(sample_a, sample_b)
    if min(sample_a.shape[0], sample_b.shape[0]) < 2:
        raise ValueError("frechet_distance needs at least 2 samples on each side.")
    cov_a = np.atleast_2d(np.cov(sample_a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(sample_b, rowvar=False))
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b)
    if not np.all(np.isfinite(covmean)):
        # singular product: nudge both covariances, as the FID reference code does
        offset = np.eye(cov_a.shape[0]) * 1e-6
        covmean = scipy.linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    if np.iscomplexobj(covmean):
        largest_imag = float(np.max(np.abs(covmean.imag)))
        if largest_imag > 1e-3 * max(1.0, float(np.max(np.abs(covmean.real)))):
            logger.warning(
                "sqrtm has a large imaginary part (%.3g); result is approximate.", largest_imag
            )
        covmean = covmean.real
    mean_diff = sample_a.mean(axis=0) - sample_b.mean(axis=0)
    distance = mean_diff @ mean_diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean)
    return float(max(distance, 0.0))  # tiny negatives are round-off


def mmd_rbf(feats_a: ArrayLike, feats_b: ArrayLike, bandwidth: float | None = None) -> float:
    """Squared MMD with an RBF kernel, BIASED (V-statistic) estimate: >= 0, 0 for equal samples.

    k(x, y) = exp(-|x - y|^2 / (2 h^2)); h = ``bandwidth`` or, when None, the median pairwise
    distance of the pooled sample. Memory is O((N_a + N_b)^2): subsample beyond a few thousand.
    """
    sample_a, sample_b = as_matrix(feats_a, "feats_a"), as_matrix(feats_b, "feats_b")
    _same_dims(sample_a, sample_b)
    pooled = np.vstack([sample_a, sample_b])
    sq_dists = cdist(pooled, pooled, "sqeuclidean")
    if bandwidth is None:
        off_diag = np.sqrt(sq_dists[np.triu_indices(pooled.shape[0], k=1)])
        positive = off_diag[off_diag > 0]
        bandwidth = float(np.median(positive)) if positive.size else 1.0
    if bandwidth <= 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}.")
    kernel = np.exp(-sq_dists / (2.0 * bandwidth**2))
    n_a = sample_a.shape[0]
    mmd_sq = kernel[:n_a, :n_a].mean() + kernel[n_a:, n_a:].mean() - 2 * kernel[:n_a, n_a:].mean()
    return float(max(mmd_sq, 0.0))


def earth_movers_distance(
    points_a: ArrayLike, weights_a: ArrayLike, points_b: ArrayLike, weights_b: ArrayLike
) -> float:
    """Exact EMD between two weighted point sets, Euclidean ground cost, solved as a transport LP.

    Weights are normalised to sum to 1 on each side.
    """
    loc_a, loc_b = as_matrix(points_a, "points_a"), as_matrix(points_b, "points_b")
    _same_dims(loc_a, loc_b)
    mass_a = np.asarray(weights_a, np.float64).reshape(-1)
    mass_b = np.asarray(weights_b, np.float64).reshape(-1)
    if mass_a.size != loc_a.shape[0] or mass_b.size != loc_b.shape[0]:
        raise ValueError("Need one weight per point on each side.")
    if np.any(mass_a < 0) or np.any(mass_b < 0) or mass_a.sum() <= 0 or mass_b.sum() <= 0:
        raise ValueError("Weights must be non-negative with a positive sum.")
    mass_a, mass_b = mass_a / mass_a.sum(), mass_b / mass_b.sum()
    cost = cdist(loc_a, loc_b, "euclidean")
    n_a, n_b = cost.shape
    # flow f_ij flattened row-major: row sums = mass_a, column sums = mass_b
    row_sums = np.kron(np.eye(n_a), np.ones((1, n_b)))
    col_sums = np.kron(np.ones((1, n_a)), np.eye(n_b))
    solution = linprog(
        cost.ravel(),
        A_eq=np.vstack([row_sums, col_sums]),
        b_eq=np.concatenate([mass_a, mass_b]),
        bounds=(0, None),
        method="highs",
    )
    if not solution.success:
        raise RuntimeError(f"EMD transport problem failed: {solution.message}")
    return float(solution.fun)


def _class_means_and_shares(
    feats: ArrayLike, labels: ArrayLike, name: str
) -> tuple[np.ndarray, np.ndarray]:
    matrix = as_matrix(feats, name)
    codes = encode_labels(labels, matrix.shape[0], f"{name} labels")
    counts = np.bincount(codes).astype(np.float64)
    means = np.stack([matrix[codes == c].mean(axis=0) for c in range(counts.size)])
    return means, counts / counts.sum()


def emd_domain_distance(
    src_feats: ArrayLike, src_labels: ArrayLike, tgt_feats: ArrayLike, tgt_labels: ArrayLike
) -> float:
    """Cui et al. 2018: EMD between class-mean features weighted by class share."""
    src_means, src_shares = _class_means_and_shares(src_feats, src_labels, "src_feats")
    tgt_means, tgt_shares = _class_means_and_shares(tgt_feats, tgt_labels, "tgt_feats")
    return earth_movers_distance(src_means, src_shares, tgt_means, tgt_shares)


def emd_domain_similarity(
    src_feats: ArrayLike,
    src_labels: ArrayLike,
    tgt_feats: ArrayLike,
    tgt_labels: ArrayLike,
    gamma: float = 0.01,
) -> float:
    """Cui et al. 2018 domain similarity exp(-gamma * EMD), in (0, 1]; 1 = identical domains.

    The EMD itself is :func:`emd_domain_distance`.
    """
    if gamma <= 0:
        raise ValueError(f"gamma must be positive, got {gamma}.")
    distance = emd_domain_distance(src_feats, src_labels, tgt_feats, tgt_labels)
    return float(np.exp(-gamma * distance))


def proxy_a_distance(feats_a: ArrayLike, feats_b: ArrayLike, seed: int = 0) -> float:
    """Proxy A-distance 2(1 - 2 err), err = cross-validated error of an A-vs-B classifier.

    Standardised features + logistic regression, stratified k-fold (k = 5, fewer when a side
    is smaller). Clipped at 0 (err above 0.5 is chance noise); saturates at 2 quickly.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sample_a, sample_b = as_matrix(feats_a, "feats_a"), as_matrix(feats_b, "feats_b")
    _same_dims(sample_a, sample_b)
    n_splits = min(5, sample_a.shape[0], sample_b.shape[0])
    if n_splits < 2:
        raise ValueError("proxy_a_distance needs at least 2 samples from each domain.")
    inputs = np.vstack([sample_a, sample_b])
    domain = np.r_[np.zeros(sample_a.shape[0]), np.ones(sample_b.shape[0])]
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    accuracy = cross_val_score(classifier, inputs, domain, cv=folds, scoring="accuracy")
    error = 1.0 - float(np.mean(accuracy))
    return float(max(2.0 * (1.0 - 2.0 * error), 0.0))

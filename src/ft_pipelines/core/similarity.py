"""Transferability and domain-similarity signals.

Pure functions on NumPy arrays (torch tensors are accepted and converted) plus one recorder
that hooks BatchNorm layers. Formulas follow references.md, "Similarity and transferability":

- data-free: BN input statistics of the target vs the pretrained BN running statistics
  (:class:`BNStatsRecorder`, :func:`bn_divergence`, :func:`aggregate_divergence`);
- from features/labels only: :func:`logme`, :func:`h_score`;
- from the source head's probabilities: :func:`leep`, :func:`nce`;
- with a source reference sample: :func:`frechet_distance`, :func:`mmd_rbf`,
  :func:`emd_domain_similarity`, :func:`proxy_a_distance`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import numpy as np
import pandas as pd
import scipy.linalg
import torch
from scipy.optimize import linprog
from scipy.spatial.distance import cdist
from torch import nn

logger = logging.getLogger(__name__)

ArrayLike = np.ndarray | torch.Tensor

_VAR_EPS = 1e-5  # same default as nn.BatchNorm2d.eps
_TINY = 1e-12


# --------------------------------------------------------------------------------------
# input helpers
# --------------------------------------------------------------------------------------


def _as_matrix(values: ArrayLike, name: str) -> np.ndarray:
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


def _encode_labels(labels: ArrayLike, n_samples: int, name: str = "labels") -> np.ndarray:
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


def _require_classes(codes: np.ndarray, name: str, minimum: int = 2) -> int:
    n_classes = int(codes.max()) + 1
    if n_classes < minimum:
        raise ValueError(f"{name} needs at least {minimum} distinct classes, got {n_classes}.")
    return n_classes


# --------------------------------------------------------------------------------------
# data-free: BatchNorm statistics
# --------------------------------------------------------------------------------------


class _ChannelMoments:
    """Streaming per-channel mean/variance: float64 batch moments merged with Chan's formula."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None  # sum of squared deviations from the mean

    def update(self, activations: torch.Tensor) -> None:
        channels = activations.shape[1]
        # [B, C, *spatial] -> [C, B*spatial]; float64 so large counts do not lose precision
        flat = activations.detach().transpose(0, 1).reshape(channels, -1).to(torch.float64)
        batch_count = flat.shape[1]
        if batch_count == 0:
            return
        batch_mean = flat.mean(dim=1)
        batch_m2 = ((flat - batch_mean[:, None]) ** 2).sum(dim=1)
        batch_mean_np = batch_mean.cpu().numpy()
        batch_m2_np = batch_m2.cpu().numpy()
        if self.mean is None or self.m2 is None:
            self.count, self.mean, self.m2 = batch_count, batch_mean_np, batch_m2_np
            return
        total = self.count + batch_count
        delta = batch_mean_np - self.mean
        self.mean = self.mean + delta * (batch_count / total)
        self.m2 = self.m2 + batch_m2_np + delta**2 * (self.count * batch_count / total)
        self.count = total

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        assert self.mean is not None and self.m2 is not None
        return self.mean.copy(), self.m2 / self.count  # population variance


class BNStatsRecorder:
    """Record per-channel mean/variance of every BatchNorm2d *input* while the model runs.

    Usage::

        with torch.no_grad(), BNStatsRecorder(model) as recorder:
            for images in batches:
                model(images)
        stats = recorder.statistics()  # {module name: (mean [C], var [C])}

    Subclasses of ``nn.BatchNorm2d`` (e.g. timm's ``BatchNormAct2d``) are hooked too.
    Statistics pool all batch x height x width positions; the variance is the population
    variance (divide by the count). With ``eval_mode=True`` (default) the model runs in eval
    mode inside the block, so BN normalises with its running statistics and does not update
    them; the previous train/eval flags are restored on exit, as are the hooks removed.
    """

    def __init__(self, model: nn.Module, eval_mode: bool = True) -> None:
        self.model = model
        self.eval_mode = eval_mode
        self._layers = [
            (name, module)
            for name, module in model.named_modules()
            if isinstance(module, nn.BatchNorm2d)
        ]
        if not self._layers:
            raise ValueError(
                f"{type(model).__name__} has no nn.BatchNorm2d layers; BN-statistics "
                "similarity needs a network with BatchNorm (e.g. efficientnet_lite0, resnet)."
            )
        self._moments = {name: _ChannelMoments() for name, _ in self._layers}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._saved_training: dict[str, bool] = {}

    def _make_hook(self, name: str) -> Callable[[nn.Module, tuple, object], None]:
        moments = self._moments[name]

        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: object) -> None:
            moments.update(inputs[0])

        return hook

    def __enter__(self) -> BNStatsRecorder:
        for name, module in self._layers:
            self._handles.append(module.register_forward_hook(self._make_hook(name)))
        if self.eval_mode:
            self._saved_training = {n: m.training for n, m in self.model.named_modules()}
            self.model.eval()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self._saved_training:
            for name, module in self.model.named_modules():
                module.train(self._saved_training.get(name, module.training))
            self._saved_training = {}

    def statistics(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per BN layer (model order) the input's per-channel (mean, variance)."""
        stats = {
            name: self._moments[name].result()
            for name, _ in self._layers
            if self._moments[name].count > 0
        }
        if not stats:
            raise ValueError(
                "No BatchNorm layer saw any input: call the model inside the "
                "`with BNStatsRecorder(model)` block before asking for statistics()."
            )
        skipped = len(self._layers) - len(stats)
        if skipped:
            logger.warning("%d BatchNorm layers were never run and are left out.", skipped)
        return stats


def symmetric_kl_diag_gaussian(
    mu1: ArrayLike, var1: ArrayLike, mu2: ArrayLike, var2: ArrayLike, eps: float = _VAR_EPS
) -> np.ndarray:
    """Elementwise symmetric KL between N(mu1, var1) and N(mu2, var2).

    Convention: the SUM of both directions, KL(p||q) + KL(q||p) (the scale design.md's
    calibration numbers use), which for 1-D Gaussians is
    ``((v1 + d^2)/v2 + (v2 + d^2)/v1 - 2) / 2`` with d = mu1 - mu2 (the log terms
    cancel). ``eps`` is added to both variances so a dead channel (var 0) stays finite.
    """
    mean_p, mean_q = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    var_p = np.asarray(var1, np.float64) + eps
    var_q = np.asarray(var2, np.float64) + eps
    if np.any(var_p <= 0) or np.any(var_q <= 0):
        raise ValueError("Variances must be non-negative.")
    mean_diff_sq = (mean_p - mean_q) ** 2
    return ((var_p + mean_diff_sq) / var_q + (var_q + mean_diff_sq) / var_p - 2.0) / 2.0


def bn_divergence(
    model: nn.Module, stats: dict[str, tuple[np.ndarray, np.ndarray]]
) -> pd.DataFrame:
    """Per BN layer, compare the target's input statistics with the BN running statistics.

    Columns: ``layer``, ``depth`` (0..L-1 in model order), ``channels``, ``divergence``
    (mean over channels of the symmetric KL, see :func:`symmetric_kl_diag_gaussian`),
    ``mean_shift`` (mean |mu - running_mean| / sqrt(running_var)) and ``var_ratio``
    (mean var / running_var). Each layer's own ``eps`` is added to the variances.
    """
    modules = dict(model.named_modules())
    unknown = [name for name in stats if name not in modules]
    if unknown:
        raise ValueError(
            f"stats names layers not in the model: {unknown[:3]}; record them on this model."
        )
    rows = []
    for name in (n for n in modules if n in stats):
        rows.append(_layer_divergence_row(name, modules[name], *stats[name]))
    frame = pd.DataFrame(
        rows, columns=["layer", "channels", "divergence", "mean_shift", "var_ratio"]
    )
    frame.insert(1, "depth", np.arange(len(frame), dtype=np.int64))
    return frame


def _layer_divergence_row(
    name: str, module: nn.Module, mean: np.ndarray, var: np.ndarray
) -> tuple[str, int, float, float, float]:
    running_mean = getattr(module, "running_mean", None)
    running_var = getattr(module, "running_var", None)
    if running_mean is None or running_var is None:
        raise ValueError(
            f"Layer {name!r} keeps no running statistics (track_running_stats=False); "
            "data-free similarity needs a pretrained BN with running mean/var."
        )
    ref_mean = running_mean.detach().cpu().double().numpy()
    ref_var = running_var.detach().cpu().double().numpy()
    mean, var = np.asarray(mean, np.float64), np.asarray(var, np.float64)
    if mean.shape != ref_mean.shape or var.shape != ref_var.shape:
        raise ValueError(
            f"Layer {name!r}: statistics have {mean.shape[0]} channels, the layer has "
            f"{ref_mean.shape[0]}; record the statistics on this very model."
        )
    eps = float(getattr(module, "eps", _VAR_EPS))
    divergence = symmetric_kl_diag_gaussian(mean, var, ref_mean, ref_var, eps=eps)
    mean_shift = np.abs(mean - ref_mean) / np.sqrt(ref_var + eps)
    var_ratio = (var + eps) / (ref_var + eps)
    return (
        name,
        int(mean.shape[0]),
        float(divergence.mean()),
        float(mean_shift.mean()),
        float(var_ratio.mean()),
    )


def aggregate_divergence(divergence_table: pd.DataFrame) -> float:
    """One number for the domain gap: the median of the per-layer ``divergence``."""
    if divergence_table.empty or "divergence" not in divergence_table:
        raise ValueError("Divergence table is empty or lacks a 'divergence' column.")
    return float(np.median(divergence_table["divergence"].to_numpy(dtype=np.float64)))


# --------------------------------------------------------------------------------------
# LogME
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogMEResult:
    """LogME score with the per-class (one-vs-rest) fits behind it."""

    score: float  # mean over classes of log-evidence / N
    evidences: np.ndarray  # [K] log-evidence / N per class
    alphas: np.ndarray  # [K] fitted weight precision
    betas: np.ndarray  # [K] fitted noise precision


def log_evidence(features: ArrayLike, targets: ArrayLike, alpha: float, beta: float) -> float:
    """Log marginal likelihood of Bayesian linear regression y = F w + e, evaluated directly.

    w ~ N(0, alpha^-1 I), e ~ N(0, beta^-1 I). Builds A = alpha I + beta F^T F ([D, D]) and
    uses slogdet; meant for checking :func:`logme` on small problems. Not divided by N.
    """
    feats = _as_matrix(features, "features")
    y = np.asarray(targets, np.float64).reshape(-1)
    n_samples, dim = feats.shape
    if alpha <= 0 or beta <= 0:
        raise ValueError(f"alpha and beta must be positive, got {alpha}, {beta}.")
    precision = alpha * np.eye(dim) + beta * feats.T @ feats
    posterior_mean = beta * np.linalg.solve(precision, feats.T @ y)
    residual_sq = float(np.sum((feats @ posterior_mean - y) ** 2))
    _, logdet = np.linalg.slogdet(precision)
    return float(
        dim / 2 * np.log(alpha)
        + n_samples / 2 * np.log(beta)
        - n_samples / 2 * np.log(2 * np.pi)
        - beta / 2 * residual_sq
        - alpha / 2 * float(posterior_mean @ posterior_mean)
        - logdet / 2
    )


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
        new_alpha = gamma / max(mean_norm_sq, _TINY)
        new_beta = max(n_samples - gamma, _TINY) / max(residual_sq, _TINY)
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
    feats = _as_matrix(features, "features")
    n_samples, dim = feats.shape
    codes = _encode_labels(labels, n_samples)
    n_classes = _require_classes(codes, "labels")
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
    probs = _as_matrix(source_probs, "source_probs")
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
    codes = _encode_labels(labels, probs.shape[0])
    n_classes = int(codes.max()) + 1
    onehot = np.eye(n_classes)[codes]  # [N, K]
    joint = onehot.T @ probs / probs.shape[0]  # P(y, z), [K, Z]
    conditional = joint / np.maximum(joint.sum(axis=0, keepdims=True), _TINY)  # P(y | z)
    expected = np.sum(probs * conditional[codes], axis=1)  # sum_z P(y_i|z) theta_z(x_i)
    return float(np.mean(np.log(np.maximum(expected, _TINY))))


def nce(source_probs: ArrayLike, labels: ArrayLike) -> float:
    """NCE (Tran et al. 2019) = -H(Y | Z), Z = argmax of the source head. <= 0, higher = better."""
    probs = _as_probabilities(source_probs)
    codes = _encode_labels(labels, probs.shape[0])
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
    feats = _as_matrix(features, "features")
    codes = _encode_labels(labels, feats.shape[0])
    _require_classes(codes, "labels")
    centered = feats - feats.mean(axis=0)
    cov_features = centered.T @ centered / feats.shape[0]
    class_means = np.stack([centered[codes == c].mean(axis=0) for c in range(codes.max() + 1)])
    conditional = class_means[codes]  # E[f | y] per sample (already centred overall)
    cov_conditional = conditional.T @ conditional / feats.shape[0]
    return float(np.trace(np.linalg.pinv(cov_features, hermitian=True) @ cov_conditional))


# --------------------------------------------------------------------------------------
# with a source reference sample
# --------------------------------------------------------------------------------------


def _same_dims(feats_a: np.ndarray, feats_b: np.ndarray) -> None:
    if feats_a.shape[1] != feats_b.shape[1]:
        raise ValueError(
            f"Feature dimensions differ ({feats_a.shape[1]} vs {feats_b.shape[1]}); "
            "extract both samples at the same layer of the same backbone."
        )


def frechet_distance(feats_a: ArrayLike, feats_b: ArrayLike) -> float:
    """Fréchet distance between Gaussians fitted to two samples (the FID formula)."""
    sample_a, sample_b = _as_matrix(feats_a, "feats_a"), _as_matrix(feats_b, "feats_b")
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
    sample_a, sample_b = _as_matrix(feats_a, "feats_a"), _as_matrix(feats_b, "feats_b")
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
    loc_a, loc_b = _as_matrix(points_a, "points_a"), _as_matrix(points_b, "points_b")
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
    matrix = _as_matrix(feats, name)
    codes = _encode_labels(labels, matrix.shape[0], f"{name} labels")
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

    sample_a, sample_b = _as_matrix(feats_a, "feats_a"), _as_matrix(feats_b, "feats_b")
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

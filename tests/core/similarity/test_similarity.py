"""Tests for ft_pipelines.core.similarity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from ft_pipelines.core.similarity.bn_statistics import (
    BNStatsRecorder,
    aggregate_divergence,
    bn_divergence,
    symmetric_kl_diag_gaussian,
)
from ft_pipelines.core.similarity.domain import (
    earth_movers_distance,
    emd_domain_distance,
    emd_domain_similarity,
    frechet_distance,
    mmd_rbf,
    proxy_a_distance,
)
from ft_pipelines.core.similarity.transferability import h_score, leep, logme, logme_fit, nce

# --------------------------------------------------------------------------------------
# symmetric KL
# --------------------------------------------------------------------------------------


def log_evidence(features: np.ndarray, targets: np.ndarray, alpha: float, beta: float) -> float:
    """Log marginal likelihood of Bayesian linear regression y = F w + e, evaluated directly.

    w ~ N(0, alpha^-1 I), e ~ N(0, beta^-1 I). Builds A = alpha I + beta F^T F ([D, D]) and
    uses slogdet; the oracle :func:`logme` is checked against on small problems. Not divided by N.
    """
    feats = np.asarray(features, np.float64)
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



def test_symmetric_kl_zero_for_identical_and_symmetric() -> None:
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    var1, var2 = rng.uniform(0.1, 3, size=5), rng.uniform(0.1, 3, size=5)
    np.testing.assert_allclose(symmetric_kl_diag_gaussian(mu1, var1, mu1, var1), 0.0, atol=1e-12)
    forward = symmetric_kl_diag_gaussian(mu1, var1, mu2, var2)
    backward = symmetric_kl_diag_gaussian(mu2, var2, mu1, var1)
    np.testing.assert_allclose(forward, backward, rtol=1e-12)
    assert np.all(forward > 0)


def test_symmetric_kl_known_pair() -> None:
    # p = N(0, 1), q = N(1, 4):
    # KL(p||q) = 0.5 * (log 4 + (1 + 1) / 4 - 1) = 0.5 * log 4 - 0.25
    # KL(q||p) = 0.5 * (log(1/4) + (4 + 1) / 1 - 1) = -0.5 * log 4 + 2
    # sum of both = 1.75
    value = symmetric_kl_diag_gaussian(
        np.array([0.0]), np.array([1.0]), np.array([1.0]), np.array([4.0]), eps=0.0
    )
    assert value.shape == (1,)
    assert value[0] == pytest.approx(1.75, rel=1e-12)


# --------------------------------------------------------------------------------------
# BN recorder and divergence
# --------------------------------------------------------------------------------------


def _bn_model(running_mean: torch.Tensor, running_var: torch.Tensor) -> nn.Module:
    bn = nn.BatchNorm2d(running_mean.numel())
    bn.running_mean.copy_(running_mean)
    bn.running_var.copy_(running_var)
    return nn.Sequential(bn).eval()


def _feed(model: nn.Module, mean: torch.Tensor, std: torch.Tensor, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    channels = mean.numel()
    with torch.no_grad(), BNStatsRecorder(model) as recorder:
        for _ in range(4):
            noise = torch.randn(64, channels, 16, 16, generator=generator)
            model(noise * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1))
    return recorder.statistics()


def test_bn_divergence_zero_at_running_stats_and_grows_with_shift() -> None:
    running_mean = torch.tensor([0.5, -1.0, 3.0])
    running_var = torch.tensor([1.0, 0.25, 4.0])
    model = _bn_model(running_mean, running_var)
    std = running_var.sqrt()
    divergences = []
    for shift in (0.0, 0.5, 1.0, 2.0):
        stats = _feed(model, running_mean + shift * std, std, seed=1)
        table = bn_divergence(model, stats)
        assert list(table.columns) == [
            "layer",
            "depth",
            "channels",
            "divergence",
            "mean_shift",
            "var_ratio",
        ]
        assert table["channels"].tolist() == [3]
        assert table["var_ratio"].iloc[0] == pytest.approx(1.0, abs=0.02)
        assert table["mean_shift"].iloc[0] == pytest.approx(shift, abs=0.02)
        divergences.append(aggregate_divergence(table))
    assert divergences[0] < 0.01
    assert all(a < b for a, b in zip(divergences, divergences[1:], strict=False))
    # equal variances: sum-convention symmetric KL = shift^2 (in std units)
    assert divergences[3] == pytest.approx(4.0, rel=0.05)


def test_recorder_matches_pooled_moments_and_removes_hooks() -> None:
    from timm.layers import BatchNormAct2d

    model = nn.Sequential(
        nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 1), BatchNormAct2d(3)
    )
    model.train()
    running_before = model[1].running_mean.clone()
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randn(n, 2, 8, 8, generator=generator) * 5 + 100 for n in (3, 7, 1)]
    with torch.no_grad(), BNStatsRecorder(model) as recorder:
        assert not model.training  # eval inside the block
        for batch in batches:
            model(batch)
    assert model.training and model[1].training  # restored
    assert torch.equal(model[1].running_mean, running_before)  # eval: running stats untouched
    assert all(len(m._forward_hooks) == 0 for m in model.modules())
    stats = recorder.statistics()
    assert list(stats) == ["1", "4"]  # model order, subclass hooked
    with torch.no_grad():
        model.eval()
        conv_out = torch.cat([model[0](batch) for batch in batches]).double()
    pooled = conv_out.transpose(0, 1).reshape(4, -1)
    np.testing.assert_allclose(stats["1"][0], pooled.mean(1).numpy(), rtol=1e-10)
    np.testing.assert_allclose(stats["1"][1], pooled.var(1, unbiased=False).numpy(), rtol=1e-8)
    table = bn_divergence(model, stats)
    assert table["depth"].tolist() == [0, 1]
    assert table["layer"].tolist() == ["1", "4"]


def test_recorder_without_forward_pass_raises() -> None:
    model = nn.Sequential(nn.BatchNorm2d(2))
    with BNStatsRecorder(model) as recorder:
        pass
    with pytest.raises(ValueError, match="inside"):
        recorder.statistics()


# --------------------------------------------------------------------------------------
# LogME
# --------------------------------------------------------------------------------------


def _check_logme_matches_direct_evidence(features: np.ndarray, labels: np.ndarray) -> None:
    fit = logme_fit(features, labels)
    n_samples = features.shape[0]
    direct = [
        log_evidence(features, (labels == cls).astype(float), alpha, beta) / n_samples
        for cls, alpha, beta in zip(np.unique(labels), fit.alphas, fit.betas, strict=True)
    ]
    np.testing.assert_allclose(fit.evidences, direct, rtol=1e-8, atol=1e-10)
    assert fit.score == pytest.approx(float(np.mean(direct)), rel=1e-8)
    assert logme(features, labels) == pytest.approx(fit.score)
    assert np.all(fit.alphas > 0) and np.all(fit.betas > 0)


def test_logme_equals_direct_evidence_at_fitted_params() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 8))
    labels = rng.integers(0, 3, size=60)
    _check_logme_matches_direct_evidence(features, labels)


def test_logme_equals_direct_evidence_when_dim_exceeds_samples() -> None:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(20, 50))
    labels = np.arange(20) % 3
    _check_logme_matches_direct_evidence(features, labels)


def test_logme_prefers_informative_features() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, size=90)
    class_directions = rng.normal(size=(3, 8)) * 3
    informative = class_directions[labels] + rng.normal(size=(90, 8))
    random = rng.normal(size=(90, 8))
    assert logme(informative, labels) > logme(random, labels) + 0.1
    # the fixed point maximises the evidence: nudging alpha or beta lowers it
    fit = logme_fit(informative, labels)
    y = (labels == 0).astype(float)
    best = log_evidence(informative, y, fit.alphas[0], fit.betas[0])
    for alpha_scale, beta_scale in ((1.05, 1), (0.95, 1), (1, 1.05), (1, 0.95)):
        nudged = log_evidence(
            informative, y, fit.alphas[0] * alpha_scale, fit.betas[0] * beta_scale
        )
        assert nudged < best


# --------------------------------------------------------------------------------------
# LEEP, NCE, H-score
# --------------------------------------------------------------------------------------


def test_h_score_hand_computed_matrix_product() -> None:
    # centred features (-2,-1), (0,-1) | (0,1), (2,1); cov f (divide by N) = [[2,1],[1,1]],
    # pinv = [[1,-1],[-1,2]]; centred class means (-1,-1), (1,1) -> cov E[f|y] = [[1,1],[1,1]].
    # tr(pinv @ cov_g) = tr([[0,0],[1,1]]) = 1, while tr(pinv * cov_g) (element-wise) = 3.
    features = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [4.0, 2.0]])
    labels = np.array([0, 0, 1, 1])
    assert h_score(features, labels) == pytest.approx(1.0, abs=1e-10)


def test_leep_and_nce_perfect_vs_random() -> None:
    rng = np.random.default_rng(3)
    source_class = rng.integers(0, 6, size=200)
    perfect_probs = np.eye(6)[source_class]
    target = source_class % 3  # each source class determines the target class
    assert nce(perfect_probs, target) == pytest.approx(0.0, abs=1e-12)
    assert leep(perfect_probs, target) == pytest.approx(0.0, abs=1e-6)

    random_probs = rng.dirichlet(np.ones(6), size=200)
    random_target = rng.integers(0, 3, size=200)
    assert nce(random_probs, random_target) < -0.5
    assert leep(random_probs, random_target) < -0.5
    assert leep(random_probs, random_target) >= -math.log(3) - 0.05  # no worse than the prior


def test_leep_rejects_logits() -> None:
    with pytest.raises(ValueError, match="softmax"):
        leep(np.array([[2.0, -1.0], [0.5, 0.5]]), np.array([0, 1]))


# --------------------------------------------------------------------------------------
# with a source reference sample
# --------------------------------------------------------------------------------------


def test_frechet_and_mmd_zero_for_same_sample_and_positive_for_shift() -> None:
    rng = np.random.default_rng(4)
    sample = rng.normal(size=(200, 5))
    assert frechet_distance(sample, sample) == pytest.approx(0.0, abs=1e-6)
    assert mmd_rbf(sample, sample) == pytest.approx(0.0, abs=1e-12)
    shifted = sample + 1.0
    # mean shift of 1 in 5 dims: Frechet = |d|^2 = 5 exactly (covariances are equal)
    assert frechet_distance(sample, shifted) == pytest.approx(5.0, rel=1e-6)
    assert mmd_rbf(sample, shifted) > 0.05
    assert mmd_rbf(sample, torch.as_tensor(shifted), bandwidth=2.0) > 0.05


def test_emd_hand_computed_two_point_case() -> None:
    # A: 0.75 at x=0, 0.25 at x=1; B: 0.25 at x=0, 0.75 at x=1 -> move 0.5 mass by 1.
    points = np.array([[0.0], [1.0]])
    emd = earth_movers_distance(points, [0.75, 0.25], points, [0.25, 0.75])
    assert emd == pytest.approx(0.5, abs=1e-9)
    # one point at the origin vs two at distance 5 and 0: 0.5 * 5
    emd = earth_movers_distance([[0.0, 0.0]], [1.0], [[3.0, 4.0], [0.0, 0.0]], [1.0, 1.0])
    assert emd == pytest.approx(2.5, abs=1e-9)


def test_emd_domain_similarity_identical_and_shifted() -> None:
    rng = np.random.default_rng(5)
    feats = rng.normal(size=(60, 4))
    labels = rng.integers(0, 3, size=60)
    assert emd_domain_similarity(feats, labels, feats, labels) == pytest.approx(1.0, abs=1e-9)
    shifted = feats + np.array([3.0, 0.0, 4.0, 0.0])  # every class mean moves by 5
    assert emd_domain_distance(feats, labels, shifted, labels) == pytest.approx(5.0, rel=1e-6)
    similarity = emd_domain_similarity(feats, labels, shifted, labels, gamma=0.1)
    assert similarity == pytest.approx(math.exp(-0.5), rel=1e-6)
    assert similarity < 1.0


def test_proxy_a_distance_separable_vs_same() -> None:
    rng = np.random.default_rng(6)
    domain_a = rng.normal(size=(80, 3))
    same = rng.normal(size=(80, 3))
    separated = rng.normal(size=(80, 3)) + 10.0
    assert proxy_a_distance(domain_a, separated) == pytest.approx(2.0, abs=1e-9)
    assert proxy_a_distance(domain_a, same) < 0.6

"""Data-free similarity: BatchNorm input statistics of the target vs the pretrained running
statistics (docs/references.md, "BN-statistics divergence")."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from types import TracebackType

import numpy as np
import pandas as pd
import torch
from torch import nn

from ft_pipelines.core.similarity.arrays import ArrayLike
from ft_pipelines.core.utils import preserved_modes

logger = logging.getLogger(__name__)

_VAR_EPS = 1e-5  # same default as nn.BatchNorm2d.eps


class _ChannelMoments:
    """Streaming per-channel mean/variance: float64 batch moments merged with Chan's formula."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None  # sum of squared deviations from the mean

    def update(self, activations: torch.Tensor) -> None:
        # [B, C, *spatial]: pooled over every dimension but C, in one pass (var_mean), in float64
        # so large counts do not lose precision
        batch_count = activations.numel() // max(activations.shape[1], 1)
        if batch_count == 0:
            return
        pooled = (0, *range(2, activations.dim()))
        batch_var, batch_mean = torch.var_mean(activations.detach().to(torch.float64),
                                               dim=pooled, correction=0)
        batch_mean_np = batch_mean.cpu().numpy()
        batch_m2_np = (batch_var * batch_count).cpu().numpy()
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
        self._stack = ExitStack()

    def _make_hook(self, name: str) -> Callable[[nn.Module, tuple, object], None]:
        moments = self._moments[name]

        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: object) -> None:
            moments.update(inputs[0])

        return hook

    def __enter__(self) -> BNStatsRecorder:
        self._stack = ExitStack()
        if self.eval_mode:
            self._stack.enter_context(preserved_modes(self.model, training=False))
        for name, module in self._layers:
            self._stack.callback(module.register_forward_hook(self._make_hook(name)).remove)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stack.close()

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

    Convention: the SUM of both directions, KL(p||q) + KL(q||p) (the scale of the calibration
    numbers in docs/strategy.md), which for 1-D Gaussians is
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

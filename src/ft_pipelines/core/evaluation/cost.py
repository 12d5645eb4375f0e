"""Cost of a model: parameters, MACs, size, CPU latency and throughput."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ft_pipelines.core.utils import (
    count_macs_params,
    count_params,
    model_size_bytes,
    on_device,
    preserved_modes,
    resolve_runtime,
)

logger = logging.getLogger(__name__)


def _sync(device: torch.device) -> None:
    # CUDA kernels run asynchronously: wait for them or the timer measures only the launch.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_forward_ms(  # noqa: PLR0917 (the timing settings of both public functions)
    model: nn.Module, input_size: tuple[int, int, int], batch_size: int, warmup: int, runs: int,
    device: str | torch.device,
) -> list[float]:
    """Wall time in ms of ``runs`` forward passes on a random batch, after ``warmup`` untimed
    ones; the model in eval mode on ``device`` meanwhile."""
    if len(input_size) != 3:
        raise ValueError(f"input_size must be (C, H, W), got {input_size}.")
    if batch_size < 1 or runs < 1:
        raise ValueError(f"batch_size and runs must be >= 1, got {batch_size} and {runs}.")
    device = torch.device(device)
    batch = torch.randn((batch_size, *input_size), device=device)
    with preserved_modes(model, training=False), on_device(model, device), torch.inference_mode():
        return timed_calls_ms(lambda: model(batch), warmup, runs, lambda: _sync(device))


def timed_calls_ms(call: Callable[[], Any], warmup: int, runs: int,
                   sync: Callable[[], None] = lambda: None) -> list[float]:
    """Wall time in ms of ``runs`` calls after ``warmup`` untimed ones (``sync`` waits for
    asynchronous work before each clock read): the one timing loop for every kind of model."""
    for _ in range(warmup):
        call()
    sync()
    timings: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        sync()
        timings.append((time.perf_counter() - start) * 1000.0)
    return timings


def timing_summary(timings_1: list[float], timings_batch: list[float], batch: int
                   ) -> dict[str, Any]:
    """Latency at batch 1 (median, 90th percentile) and throughput at ``batch`` from timings."""
    return {"latency_ms": float(statistics.median(timings_1)),
            "latency_p90_ms": float(np.percentile(timings_1, 90)),
            "throughput": batch * len(timings_batch) / (sum(timings_batch) / 1000.0),
            "throughput_batch": batch}


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
    timings = _timed_forward_ms(model, input_size, batch_size, warmup, runs, device)
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
    timings = _timed_forward_ms(model, input_size, batch_size, warmup, runs, device)
    images_per_s = batch_size * runs / (sum(timings) / 1000.0)
    logger.info("Throughput (batch %d, %s): %.1f images/s", batch_size, device, images_per_s)
    return float(images_per_s)


def cost_metrics(model: nn.Module, params: dict[str, Any]) -> dict[str, Any]:
    """Parameters, MACs, size on disk, latency at batch 1 and throughput at batch 64, timed on
    ``params["device"]`` in ``params["precision"]`` (runtime.*; synchronised on GPUs)."""
    size = model.backbone_cfg.input_size
    shape = (3, size, size)
    batch = int(params.get("throughput_batch", 64))
    runtime = resolve_runtime(params)
    with runtime.autocast():
        latency = measure_latency(model, shape, 1, int(params.get("latency_warmup", 10)),
                                  int(params.get("latency_runs", 50)), device=runtime.device)
        throughput = measure_throughput(model, shape, batch, device=runtime.device)
    macs, _ = count_macs_params(model, torch.zeros(1, *shape))
    return {"params": count_params(model), "macs": macs,
            "size_bytes": model_size_bytes(model), "latency_ms": latency["median_ms"],
            "latency_p90_ms": latency["p90_ms"],
            "throughput": throughput, "throughput_batch": batch}

"""Cost of a model: parameters, MACs, size, CPU latency and throughput."""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ft_pipelines.core.evaluation.settings import TimingParams
from ft_pipelines.core.utils import (
    count_macs_params,
    count_params,
    model_size_bytes,
    on_device,
    preserved_modes,
    resolve_runtime,
)
from ft_pipelines.core.utils.runtime import RuntimeParams

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


MIN_ROUNDS = 5
# After a call, onnxruntime's (and OpenMP's) worker threads spin for tens of ms before they
# sleep: on 2 cores, the previous model's spinning worker took a core from the next model, which
# measured a pruned model at 1,600 images/s instead of the 4,600 it runs alone
# (docs/performance.md).
QUIET_WINDOW_S, QUIET_MAX_S, QUIET_CPU_SHARE = 0.01, 0.25, 0.2


def wait_for_quiet_threads(max_s: float = QUIET_MAX_S, window_s: float = QUIET_WINDOW_S) -> float:
    """Sleep until this process's threads stop using the CPU (one ``window_s`` in which they use
    under a fifth of a core), at most ``max_s``; returns the seconds waited. The interleaved
    timer calls it before each model, so no model is timed against another one's spinning
    workers: each is measured as it runs alone."""
    start = time.perf_counter()
    while time.perf_counter() - start < max_s:
        cpu, wall = time.process_time(), time.perf_counter()
        time.sleep(window_s)
        if time.process_time() - cpu < QUIET_CPU_SHARE * (time.perf_counter() - wall):
            break
    return time.perf_counter() - start


@dataclass(frozen=True)
class TimedModel:
    """What the interleaved timer runs for one model: a forward pass at batch 1 (``one``) and
    one at the throughput batch (``batch``); ``sync`` waits for asynchronous work (CUDA)."""

    one: Callable[[], Any]
    batch: Callable[[], Any]
    sync: Callable[[], None] = field(default=lambda: None)


def round_order(names: list[str], round_index: int) -> list[str]:
    """The models' order in round ``round_index``: rotated by one each round, so every model
    runs in every position equally often (no model always follows the same one)."""
    shift = round_index % len(names) if names else 0
    return names[shift:] + names[:shift]


def interleaved_rounds(models: dict[str, TimedModel], rounds: int, runs: int = 1,
                       warmup: int = 1) -> dict[str, Any]:
    """Time every model once per round, the order rotated each round (``round_order``).

    Per model and round: the median of ``runs`` batch-1 calls (ms) and one call at the batch
    (ms), started once the threads of the model before it are quiet (``wait_for_quiet_threads``).
    On a shared machine the load drifts over seconds: models timed in the same round see
    the same load, so per-round ratios compare them fairly where one pass per model does not.
    Returns ``{"latency": {name: [ms per round]}, "batch": {...}, "calls": {name: [every
    batch-1 call]}, "orders": [[names] per round]}``."""
    if rounds < MIN_ROUNDS or runs < 1 or warmup < 0:
        raise ValueError(f"Timing needs rounds >= {MIN_ROUNDS} and runs >= 1, warmup >= 0; got "
                         f"rounds={rounds}, runs={runs}, warmup={warmup}")
    names = list(models)
    for name in names:  # first calls allocate and plan kernels: never timed
        timed_calls_ms(models[name].one, warmup, 0, models[name].sync)
        # a new onnxruntime session's first two batch calls are ~1.5x slower than the rest
        timed_calls_ms(models[name].batch, min(warmup, 2), 0, models[name].sync)
    result: dict[str, Any] = {"latency": {n: [] for n in names}, "batch": {n: [] for n in names},
                              "calls": {n: [] for n in names}, "orders": []}
    for index in range(rounds):
        order = round_order(names, index)
        result["orders"].append(order)
        for position, name in enumerate(order):
            model = models[name]
            if len(names) > 1 or (index == 0 and position == 0):
                wait_for_quiet_threads()
            calls = timed_calls_ms(model.one, 0, runs, model.sync)
            result["calls"][name] += calls
            result["latency"][name].append(float(statistics.median(calls)))
            result["batch"][name].append(timed_calls_ms(model.batch, 0, 1, model.sync)[0])
    return result


def _spread(values: list[float]) -> float:
    """Interquartile range: how much the rounds disagree, robust to one disturbed round."""
    low, high = np.percentile(values, [25, 75])
    return float(high - low)


def within_round_ratio(numerator: list[float], denominator: list[float]) -> float:
    """The median over rounds of ``numerator[r] / denominator[r]``: a ratio of two models
    measured under the same load, round by round."""
    return float(statistics.median(a / b for a, b in zip(numerator, denominator, strict=True)))


def compare_timings(models: dict[str, TimedModel], batch: int, *, rounds: int = 7,
                    runs: int = 7, warmup: int = 2, reference: str | None = None
                    ) -> dict[str, dict[str, Any]]:
    """Latency at batch 1 and throughput at ``batch`` of several models, interleaved
    (``interleaved_rounds``): per model the median over rounds and its spread (IQR), the
    per-round values, and with ``reference`` the within-round ratios to that model
    (``latency_ratio``: < 1 is faster; ``throughput_ratio``: > 1 is faster)."""
    if reference is not None and reference not in models:
        raise ValueError(f"reference {reference!r} is not among the timed models {list(models)}")
    timed = interleaved_rounds(models, rounds, runs, warmup)
    summary: dict[str, dict[str, Any]] = {}
    for name in models:
        latency = timed["latency"][name]
        throughput = [batch * 1000.0 / ms for ms in timed["batch"][name]]
        row = {"latency_ms": float(statistics.median(latency)),
               "latency_spread_ms": _spread(latency),
               "latency_p90_ms": float(np.percentile(timed["calls"][name], 90)),
               "throughput": float(statistics.median(throughput)),
               "throughput_spread": _spread(throughput), "throughput_batch": int(batch),
               "latency_rounds_ms": latency, "throughput_rounds": throughput,
               # the protocol, recorded so that two stages' figures can be checked to agree
               "timing_rounds": rounds, "timing_runs": runs, "timing_warmup": warmup}
        if reference is not None:
            row.update(ratio_reference=reference,
                       latency_ratio=within_round_ratio(latency, timed["latency"][reference]),
                       throughput_ratio=within_round_ratio(timed["batch"][reference],
                                                           timed["batch"][name]))
        summary[name] = row
    logger.info("Interleaved timing (%d rounds, batch 1 and %d): %s", rounds, batch,
                {n: f"{r['latency_ms']:.2f} ms, {r['throughput']:.0f}/s" for n, r in
                 summary.items()})
    return summary


def torch_timed_model(model: nn.Module, input_size: tuple[int, int, int], batch: int,
                      device: torch.device, autocast: Callable[[], Any]) -> TimedModel:
    """``TimedModel`` of a PyTorch model already in eval mode on ``device``: random inputs,
    inference mode and ``autocast`` (the runtime's precision) around each call."""
    one = torch.randn((1, *input_size), device=device)
    many = torch.randn((batch, *input_size), device=device)

    def forward(inputs: torch.Tensor) -> Any:
        with torch.inference_mode(), autocast():
            return model(inputs)

    return TimedModel(lambda: forward(one), lambda: forward(many), lambda: _sync(device))


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


def static_cost(model: nn.Module) -> dict[str, Any]:
    """Parameters, MACs (one image at the model's input size) and size of the weights."""
    size = model.backbone_cfg.input_size
    macs, _ = count_macs_params(model, torch.zeros(1, 3, size, size))
    return {"params": count_params(model), "macs": macs, "size_bytes": model_size_bytes(model)}


def timing_settings(timing: TimingParams | dict[str, Any]) -> dict[str, int]:
    """``compare_timings`` keywords from the timing keys (``evaluation.*``, ``export.*``):
    ``latency_runs`` batch-1 calls in all, spread over ``timing_rounds`` rounds."""
    timing = TimingParams.model_validate(timing) if isinstance(timing, dict) else timing
    rounds = timing.timing_rounds
    runs = max(1, -(-timing.latency_runs // rounds))  # ceil
    return {"rounds": rounds, "runs": runs, "warmup": timing.latency_warmup}


def time_torch_models(models: dict[str, nn.Module], timing: TimingParams,
                      runtime: RuntimeParams | None = None,
                      extra: dict[str, TimedModel] | None = None, reference: str | None = None
                      ) -> dict[str, dict[str, Any]]:
    """``compare_timings`` of PyTorch models (eval mode, on ``runtime.device`` in
    ``runtime.precision`` meanwhile) and of ``extra`` ones (e.g. onnxruntime sessions),
    all interleaved in the same rounds."""
    resolved = resolve_runtime(runtime)
    batch = timing.throughput_batch
    with contextlib.ExitStack() as stack:
        timed = {}
        for name, model in models.items():
            stack.enter_context(preserved_modes(model, training=False))
            stack.enter_context(on_device(model, resolved.device))
            size = model.backbone_cfg.input_size
            timed[name] = torch_timed_model(model, (3, size, size), batch,
                                            torch.device(resolved.device), resolved.autocast)
        timed.update(extra or {})
        return compare_timings(timed, batch, reference=reference, **timing_settings(timing))


def cost_metrics(model: nn.Module, timing: TimingParams,
                 runtime: RuntimeParams | None = None) -> dict[str, Any]:
    """Parameters, MACs, size on disk, latency at batch 1 and throughput at batch 64, timed on
    ``runtime.device`` in ``runtime.precision`` (synchronised on GPUs)."""
    return {**static_cost(model), **time_torch_models({"model": model}, timing, runtime)["model"]}

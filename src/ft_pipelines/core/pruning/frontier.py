"""``pruning.ratio: auto``: search the accuracy-cost frontier by pruning iteratively.

Each step removes a share of the *remaining* cost (MACs, channels or onnxruntime latency),
recovers briefly and measures validation top-1. The search goes on while the drop from the
fine-tuned model stays within the budget and the most of the cost it may remove
(``max_ratio``) is not reached, and ships the most compressed step within the budget. Only the
best step so far is held in memory besides the step being tried.

When even the first step breaks the budget, its share is halved (at most ``max_attempts``
tries, from the fine-tuned model each time, as the fixed ratio's back-off does); when none is
within, the best of them is kept and flagged (``accepted: false``), never the unpruned model:
the stage's output is a pruned model, and the report says not to ship it.

Under data parallelism every decision is rank 0's: each measured value that steers the search
(validation top-1, the step's cost) passes through ``rank0_decides`` before it is used.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from ft_pipelines.core.evaluation import compare_timings, timing_settings
from ft_pipelines.core.evaluation.settings import TimingParams
from ft_pipelines.core.export import OnnxRunner, export_onnx, onnx_timed_model
from ft_pipelines.core.pruning.structural import PruningLimitReached
from ft_pipelines.core.training import rank0_decides, set_activity, world
from ft_pipelines.core.utils import count_macs_params

logger = logging.getLogger(__name__)

#: a step that would remove less than this share of the remaining cost is not worth a step
MIN_STEP_SHARE = 0.02
#: the smallest input (px) the search shrinks a model to (a 32-stride network's last map is 1x1)
MIN_INPUT_SIZE = 32
#: hard cap on the steps of one search (the floors end it much sooner in practice)
MAX_STEPS = 20
#: onnxruntime timing of one step, with the project's one interleaved timer against the
#: unpruned export: the minimum rounds (a step is timed several times per search), 5 batch-1
#: calls per round, the throughput at batch 64 as everywhere else
SEARCH_TIMING = TimingParams(timing_rounds=5, latency_runs=25, latency_warmup=5,
                             throughput_batch=64)


@dataclass
class SearchSettings:
    share: float                 # pruning.step: share of the remaining cost one step removes
    max_ratio: float             # pruning.max_ratio: the most of the cost the search may remove
    max_drop_points: float       # pruning.max_val_drop
    max_attempts: int = 1        # tries of the first step, halving its share after each failure
    max_steps: int = MAX_STEPS


@dataclass
class StepOutcome:
    """What one step returns: the candidate (model and whatever goes with it), its validation
    top-1, its remaining cost as a fraction of the unpruned model's, and details to record."""
    candidate: Any
    val_top1: float
    cost_fraction: float
    details: dict[str, Any] = field(default_factory=dict)


def _next_share(remaining: float, share: float, max_ratio: float) -> float:
    """Share of the remaining cost the next step removes: ``share``, cut so that the total
    removed does not pass ``max_ratio``."""
    target = max(remaining * (1.0 - share), 1.0 - max_ratio)
    return 1.0 - target / remaining if remaining > 0 else 0.0


def frontier_search(step: Callable[[Any, int, float], StepOutcome], start: Any,
                    reference: float, settings: SearchSettings
                    ) -> tuple[Any, list[dict], bool]:
    """Run ``step(current, index, share)`` -> :class:`StepOutcome` from ``start`` until a step
    breaks the budget, the floor is reached or the layer floors stop the pruning. Returns (kept
    candidate, one record per step, whether the kept one is within the budget)."""
    records: list[dict] = []
    current, remaining, share = start, 1.0, settings.share
    best, best_record = None, None
    for index in range(1, settings.max_steps + 1):
        step_share = _next_share(remaining, share, settings.max_ratio)
        if step_share < MIN_STEP_SHARE:
            logger.info("Pruning search: %.1f%% of the cost removed, the floor pruning.max_ratio="
                        "%.2f is reached", 100 * (1 - remaining), settings.max_ratio)
            break
        started = time.perf_counter()
        set_activity(f"pruning search step {index} (share {step_share:.3f})")
        try:
            outcome = step(current, index, step_share)
        except PruningLimitReached as error:  # deterministic: every rank stops here alike
            logger.info("Pruning search stops at step %d: %s", index, error)
            break
        record = _judged(outcome, index, step_share, reference, settings.max_drop_points,
                         started)
        records.append(record)
        within = record["within_limit"]
        if within:  # the new best: the previous one is dropped (one best in memory)
            best, best_record = outcome.candidate, record
            current, remaining = outcome.candidate, record["cost_fraction"]
            continue
        if best_record is not None and best_record["within_limit"]:
            break  # the frontier is passed: ship the last step within the budget
        if best_record is None or record["val_top1"] > best_record["val_top1"]:
            best, best_record = outcome.candidate, record  # fallback, flagged, if none passes
        if len(records) >= settings.max_attempts:  # every step so far was a try of the first
            break
        share /= 2.0  # the first step broke the budget: retry it from the start, gentler
    if best_record is None:
        raise PruningLimitReached(
            "The pruning search could not take a single step: the per-layer floors leave no "
            "room. Raise pruning.max_layer_ratio or lower pruning.min_feature_channels.")
    best_record["kept"] = True
    return best, records, bool(best_record["within_limit"])


def _judged(outcome: StepOutcome, index: int, share: float, reference: float,  # noqa: PLR0917
            max_drop_points: float, started: float) -> dict[str, Any]:
    """A step's record, judged against the budget. One yardstick for every rank: rank 0's
    measurements (validation top-1, cost) decide continue / stop / keep."""
    val_top1, cost = rank0_decides((outcome.val_top1, outcome.cost_fraction))
    drop = 100.0 * (reference - val_top1)
    within = drop <= max_drop_points
    logger.info("Pruning step %d (share %.3f, cost %.3f of the unpruned): val top-1 %.4f "
                "(%.2f points below the fine-tuned %.4f)%s", index, share, cost, val_top1, drop,
                reference, "" if within else ": over the budget")
    return {"step": index, "attempt": index, "ratio": share, **outcome.details,
            "cost_fraction": cost, "val_top1": val_top1, "val_drop_points": drop,
            "within_limit": within, "kept": False, "seconds": time.perf_counter() - started}


def input_sizes(size: int, scales: list[float]) -> list[int]:
    """The smaller input sizes ``pruning.input_scales`` asks for, largest first: each scale of
    ``size`` rounded to a multiple of 8 px, at least 32 (``MIN_INPUT_SIZE``)."""
    sizes = {max(MIN_INPUT_SIZE, 8 * round(size * scale / 8)) for scale in scales}
    return sorted((s for s in sizes if s < size), reverse=True)


def input_size_search(step: Callable[[Any, int, int], StepOutcome], start: Any,
                      sizes: list[int], first_index: int, reference: float,
                      max_drop_points: float) -> tuple[Any, list[dict]]:
    """After the channel steps: ``step(current, index, size)`` -> :class:`StepOutcome` for each
    of ``sizes`` in turn, each from the last one within the budget; stops at the first over it.
    Returns (the last candidate within the budget, else ``start``; one record per step, the
    kept one marked)."""
    kept, records = start, []
    for index, size in enumerate(sizes, start=first_index):
        started = time.perf_counter()
        set_activity(f"pruning search step {index} (input {size} px)")
        outcome = step(kept, index, size)
        record = _judged(outcome, index, 0.0, reference, max_drop_points, started)
        records.append(record)
        if not record["within_limit"]:
            break
        kept = outcome.candidate
    within = [r for r in records if r["within_limit"]]
    if within:
        within[-1]["kept"] = True
    return kept, records


def _renumber(table: pd.DataFrame, kept: dict[str, np.ndarray]) -> pd.DataFrame:
    """The importance table restricted to the channels still there, numbered 0.. per layer as
    in the pruned model (``kept``: original channel indices per layer, in order)."""
    parts = []
    for layer, rows in table.groupby("layer", sort=False):
        indices = kept.get(layer)
        rows = rows.sort_values("channel")
        if indices is not None:
            rows = rows.set_index("channel").loc[indices].reset_index()
            rows["channel"] = np.arange(len(indices))
        parts.append(rows)
    return pd.concat(parts, ignore_index=True)


def surviving_table(table: pd.DataFrame, removed: dict[str, list[int]]) -> pd.DataFrame:
    """The importance table of a model pruned by ``removed`` (original indices per layer)."""
    kept = {}
    for layer, rows in table.groupby("layer", sort=False):
        kept[layer] = np.setdiff1d(rows["channel"].to_numpy(),
                                   np.asarray(removed.get(layer, []), dtype=np.int64))
    return _renumber(table, kept)


def to_original(table: pd.DataFrame, removed_before: dict[str, list[int]],
                removed_now: dict[str, list[int]]) -> dict[str, list[int]]:
    """Original indices removed in all, from those removed before and the indices (in the
    pruned model's numbering) removed by this step."""
    merged = {}
    for layer, rows in table.groupby("layer", sort=False):
        before = set(removed_before.get(layer, []))
        alive = [c for c in sorted(rows["channel"].tolist()) if c not in before]
        now = [alive[i] for i in removed_now.get(layer, [])]
        if before or now:
            merged[layer] = sorted(before.union(now))
    return merged


def onnx_runner(model: nn.Module, threads: int | None) -> OnnxRunner:
    """An onnxruntime session of ``model`` exported with the project's exporter (in memory;
    nothing is stored), with the session options every stage uses (``session_options``)."""
    cfg = model.backbone_cfg
    size = int(cfg.input_size)
    classes = [str(i) for i in range(_num_outputs(model, size))]
    exported = export_onnx(model.cpu(), classes, size, list(cfg.mean), list(cfg.std))
    return OnnxRunner(exported, threads=threads)


def onnx_timings(model: nn.Module, threads: int | None, reference: OnnxRunner | None = None,
                 runner: OnnxRunner | None = None) -> dict[str, float]:
    """onnxruntime latency at batch 1 (median of the rounds, ms, and its spread) and throughput
    at batch 64 of ``model``, timed by ``compare_timings`` (the evaluation's and the export's
    timer) against ``reference`` (the unpruned export) in the same rounds when given: then
    ``ort_latency_ratio`` / ``ort_throughput_ratio`` are within-round ratios to it, which
    drift in the machine's load between steps does not bias. ``runner``: ``model``'s session
    when the caller has one already (the unpruned export, step 0)."""
    batch = SEARCH_TIMING.throughput_batch
    timed = {"step": onnx_timed_model(runner or onnx_runner(model, threads), batch)}
    if reference is not None:
        timed["unpruned"] = onnx_timed_model(reference, batch)
    result = compare_timings(timed, batch, reference="unpruned" if reference else None,
                             **timing_settings(SEARCH_TIMING))["step"]
    row = {"ort_latency_ms": result["latency_ms"],
           "ort_latency_spread_ms": result["latency_spread_ms"],
           "ort_throughput": result["throughput"]}
    if reference is not None:
        row.update(ort_latency_ratio=result["latency_ratio"],
                   ort_throughput_ratio=result["throughput_ratio"])
    return row


@torch.inference_mode()
def _num_outputs(model: nn.Module, size: int) -> int:
    was_training = model.training
    model.eval()
    try:
        return int(model(torch.zeros(1, 3, size, size)).shape[1])
    finally:
        model.train(was_training)


def step_costs(model: nn.Module, threads: int | None, timed: bool,  # noqa: PLR0917
               reference: OnnxRunner | None = None, runner: OnnxRunner | None = None
               ) -> dict[str, Any]:
    """A step's row: MACs and parameters, and (on the rank that times, ``timed``) onnxruntime
    latency and throughput (against ``reference``, see :func:`onnx_timings`); other ranks
    record None (they use rank 0's via rank0_decides)."""
    size = int(model.backbone_cfg.input_size)
    macs, params = count_macs_params(model, torch.zeros(1, 3, size, size))
    timings = onnx_timings(model, threads, reference, runner) if timed else {
        "ort_latency_ms": None, "ort_throughput": None}
    return {"macs": int(macs), "params": int(params), "input_size": size, **timings}


def timing_rank() -> bool:
    """Only rank 0 exports and times (the others would only add noise and time)."""
    return world()[0] == 0


def frontier_figure(steps: list[dict]) -> Figure:
    """Validation top-1 against onnxruntime latency (batch 1) for every step; the fine-tuned
    model (step 0) and the shipped step marked."""
    figure = Figure(figsize=(6, 4), constrained_layout=True)
    axes = figure.subplots()
    rows = [r for r in steps if r.get("ort_latency_ms") is not None]
    if rows:
        axes.plot([r["ort_latency_ms"] for r in rows], [100 * r["val_top1"] for r in rows],
                  "o", color="tab:blue", label="search steps (numbered)")
        for row in rows:
            axes.annotate(str(row["step"]), (row["ort_latency_ms"], 100 * row["val_top1"]),
                          textcoords="offset points", xytext=(4, 4), fontsize=8)
        for row, style in ((next((r for r in rows if r["step"] == 0), None), "s"),
                           (next((r for r in rows if r["kept"]), None), "*")):
            if row is not None:
                label = "fine-tuned (unpruned)" if style == "s" else "shipped"
                axes.plot(row["ort_latency_ms"], 100 * row["val_top1"], style, markersize=14,
                          color="tab:orange" if style == "*" else "tab:gray", label=label)
        axes.legend(loc="lower right")
    else:
        axes.text(0.5, 0.5, "no iterative search in this run (pruning.ratio is a number)",
                  ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel("onnxruntime latency, batch 1 (ms)")
    axes.set_ylabel("validation top-1 (%)")
    axes.set_title("Pruning frontier")
    axes.grid(alpha=0.3)
    return figure

"""Which int8 configuration pays: every configuration tried on the pruned fp32 model, timed
against it in onnxruntime (interleaved rounds), its top-1 on the validation split (the choice)
and the test split (reported); the fastest within the accuracy budget is kept, and only if it
is faster than fp32 is it recommended.

Picking the fastest of several configurations timed in the same noisy rounds favours the one
whose rounds happened to run fast (the winner's curse: on the demo, configurations that differ
only in calibration, hence run the same kernels, measured 1.4x to 1.8x fp32's throughput). So
the kept configuration is timed again against fp32 alone in fresh rounds, and that
confirmation, not the selection's figures, decides whether int8 pays and meets the target."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from ft_pipelines.core.data import ImageData
from ft_pipelines.core.evaluation.cost import compare_timings
from ft_pipelines.core.export.artifact import OnnxModel
from ft_pipelines.core.export.evaluate import (
    PROTOCOL_KEYS,
    onnx_timed_model,
    session_threads,
)
from ft_pipelines.core.export.quantize import (
    INT8_CONFIGS,
    prepare_for_quantization,
    quantize_config,
)
from ft_pipelines.core.export.runtime import CPU, OnnxRunner

logger = logging.getLogger(__name__)
# Issue 23's bar for int8 (both): batch-1 latency at most 0.75x fp32 and batch-64 throughput
# at least 1.8x. Reported as ``meets_target``; "pays" (recommended) only needs faster in both.
TARGET_LATENCY_RATIO, TARGET_THROUGHPUT_RATIO = 0.75, 1.8
_TIMING_KEYS = ("latency_ms", "latency_spread_ms", "throughput", "throughput_spread",
                "latency_ratio", "throughput_ratio")


def _correct(logits: np.ndarray, labels: np.ndarray) -> int:
    return int((logits.argmax(axis=1) == labels).sum())


def _quantize_trials(fp32: OnnxModel, calibration: np.ndarray, histogram_images: int,
                     configs: list[str]) -> tuple[dict[str, OnnxModel], list[dict[str, Any]]]:
    prepared = prepare_for_quantization(fp32)
    models, rows = {}, []
    for name in configs:
        config = INT8_CONFIGS[name]
        # the histogram methods (entropy, percentile) cost far more per image than MinMax
        images = calibration if config.calibration == "minmax" else \
            calibration[:histogram_images]
        row: dict[str, Any] = {"config": name, **config.describe(),
                               "calibration_images": int(len(images))}
        try:
            models[name] = quantize_config(fp32, prepared, images, config, name)
        except Exception as error:  # an unsupported combination is a result, not a crash
            logger.warning("int8 %s failed: %s", name, error)
            row["error"] = f"{type(error).__name__}: {error}"
        rows.append(row)
    return models, rows


def _speedup(row: dict[str, Any]) -> float:
    """Geometric mean of the batch-1 and batch-64 speed-ups over fp32 (both count)."""
    return math.sqrt(row["throughput_ratio"] / row["latency_ratio"])


def search_int8(fp32: OnnxModel, calibration: np.ndarray, val: ImageData, test: ImageData,
                settings: dict[str, Any]) -> tuple[OnnxModel | None, dict[str, Any]]:
    """Try ``settings["configs"]`` (names of ``INT8_CONFIGS``; None: all), measure each and
    keep the fastest whose validation top-1 is within ``settings["max_drop"]`` points of fp32.

    ``settings``: ``configs``, ``histogram_images``, ``max_drop``, ``threads``, ``batch`` and
    the timing keys of ``timing_settings``. Returns the kept model (None when every
    configuration failed) and ``{"trials": [one row per configuration], "fp32": ...,
    "chosen", "pays", "meets_target", "reason"}``."""
    configs = list(settings.get("configs") or INT8_CONFIGS)
    unknown = [c for c in configs if c not in INT8_CONFIGS]
    if unknown:
        raise ValueError(f"export.int8_configs names {unknown}; choose among "
                         f"{list(INT8_CONFIGS)}")
    models, rows = _quantize_trials(fp32, calibration, int(settings["histogram_images"]),
                                    configs)
    threads, batch = settings.get("threads"), int(settings["batch"])
    runners = {"fp32": OnnxRunner(fp32, CPU, threads)}
    runners.update({name: OnnxRunner(model, CPU, threads) for name, model in models.items()})
    labels = {"val": val.labels.numpy(), "test": test.labels.numpy()}
    correct = {name: {split: _correct(runner.logits(data.images.numpy()), labels[split])
                      for split, data in (("val", val), ("test", test))}
               for name, runner in runners.items()}
    timings = compare_timings({n: onnx_timed_model(r, batch) for n, r in runners.items()},
                              batch, reference="fp32", rounds=int(settings["rounds"]),
                              runs=int(settings["runs"]), warmup=int(settings["warmup"]))
    for row in rows:
        if row["config"] in models:
            _score(row, correct, timings[row["config"]], labels, float(settings["max_drop"]))
    fp32_row = {"val_top1": correct["fp32"]["val"] / len(labels["val"]),
                "top1": correct["fp32"]["test"] / len(labels["test"]),
                **{k: timings["fp32"][k] for k in _TIMING_KEYS},
                # how it was timed: the evaluation's rows must show the same (timing_protocol)
                **{k: timings["fp32"].get(k) for k in PROTOCOL_KEYS},
                "threads": session_threads(runners["fp32"])}
    summary = _choose(rows, float(settings["max_drop"]), batch)
    if summary["chosen"] is not None:
        confirmation = compare_timings(
            {"fp32": onnx_timed_model(runners["fp32"], batch),
             summary["chosen"]: onnx_timed_model(runners[summary["chosen"]], batch)},
            batch, reference="fp32", rounds=int(settings["rounds"]),
            runs=int(settings["runs"]), warmup=int(settings["warmup"]))
        summary = _confirm(rows, confirmation[summary["chosen"]], batch)
    kept = next((r["config"] for r in rows if r["chosen"]), None)  # saved as pruned_int8
    return (models[kept] if kept else None), {"trials": rows, "fp32": fp32_row, "kept": kept,
                                              **summary}


def _score(row: dict[str, Any], correct: dict[str, dict[str, int]], timing: dict[str, Any],
           labels: dict[str, np.ndarray], max_drop: float) -> None:
    name = row["config"]
    row.update({k: timing[k] for k in _TIMING_KEYS})
    row["val_top1"] = correct[name]["val"] / len(labels["val"])
    row["top1"] = correct[name]["test"] / len(labels["test"])  # reported, not chosen on
    # from counts of correct images, as assess_int8 (no 1.0000000000000009 points)
    row["val_drop_points"] = 100.0 * (correct["fp32"]["val"] - correct[name]["val"]) / len(
        labels["val"])
    row["within_budget"] = row["val_drop_points"] <= max_drop
    row["faster"] = row["latency_ratio"] < 1.0 and row["throughput_ratio"] > 1.0
    row["chosen"] = False


def _most_accurate(rows: list[dict[str, Any]]) -> str | None:
    scored = [r for r in rows if "error" not in r]
    return max(scored, key=lambda r: r["val_top1"])["config"] if scored else None


def _choose(rows: list[dict[str, Any]], max_drop: float, batch: int) -> dict[str, Any]:
    """Mark the kept row ``chosen``: the fastest within the budget (or, when none is, the
    most accurate, kept only to be reported and flagged)."""
    eligible = [r for r in rows if r.get("within_budget")]
    if not eligible:
        kept = _most_accurate(rows)
        for row in rows:
            row["chosen"] = row["config"] == kept
        return {"chosen": None, "pays": False, "meets_target": False,
                "reason": (f"no int8 configuration kept validation top-1 within "
                           f"export.max_int8_drop={max_drop} points of fp32" if kept else
                           "every int8 configuration failed to quantise")}
    best = max(eligible, key=_speedup)
    best["chosen"] = True
    return _verdict(best, batch)


def _verdict(best: dict[str, Any], batch: int, timed: str = "") -> dict[str, Any]:
    """Whether the kept row pays (faster in both) and meets issue 23's target, and why."""
    pays = best["latency_ratio"] < 1.0 and best["throughput_ratio"] > 1.0
    meets = (best["latency_ratio"] <= TARGET_LATENCY_RATIO
             and best["throughput_ratio"] >= TARGET_THROUGHPUT_RATIO)
    numbers = (f"{best['latency_ratio']:.2f}x fp32's batch-1 latency and "
               f"{best['throughput_ratio']:.2f}x its batch-{batch} throughput{timed}")
    reason = (f"fastest int8 within the budget: {best['config']}, {numbers}" if pays else
              f"no int8 configuration is faster than fp32 on this CPU: the fastest within the "
              f"budget, {best['config']}, runs at {numbers}; ship fp32")
    logger.info("int8 search: %s", reason)
    return {"chosen": best["config"], "pays": pays, "meets_target": meets, "reason": reason}


def _confirm(rows: list[dict[str, Any]], timing: dict[str, Any], batch: int
             ) -> dict[str, Any]:
    """The kept row re-timed against fp32 alone: its selection figures move to
    ``selection_*``, the confirmation's become its figures and decide the verdict."""
    best = next(r for r in rows if r["chosen"])  # within the budget (else nothing to confirm)
    for key in ("latency_ratio", "throughput_ratio"):
        best[f"selection_{key}"] = best[key]
    best.update({k: timing[k] for k in _TIMING_KEYS})
    best["faster"] = best["latency_ratio"] < 1.0 and best["throughput_ratio"] > 1.0
    return {**_verdict(best, batch, " (confirmed: timed again against fp32 alone)"),
            "selection": {"latency_ratio": best["selection_latency_ratio"],
                          "throughput_ratio": best["selection_throughput_ratio"]}}

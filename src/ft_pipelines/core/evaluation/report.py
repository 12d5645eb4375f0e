"""Evaluation on the test split: the cheap alternatives (linear probe, classical classifiers on
pixels), the fine-tuned and the pruned model, with accuracy, calibration and cost side by side,
the recommendation of which model to ship, and the report a person reads first.

Everything here is generic over the rows of ``evaluation_metrics`` (model name -> metric dict):
a row may lack size, latency or throughput, and may carry ``recommended: false`` with a
``not_recommended_reason``; rows added later (an ONNX export, say) need no change here.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from torch import nn

from ft_pipelines.core.data import ImageData
from ft_pipelines.core.evaluation.baselines import (
    PIXEL_BASELINES,
    linear_probe_model,
    pixel_baselines,
)
from ft_pipelines.core.evaluation.calibration import calibrated_scores, fit_calibration
from ft_pipelines.core.evaluation.cost import (
    TimedModel,
    static_cost,
    time_torch_models,
    within_round_ratio,
)
from ft_pipelines.core.evaluation.metrics import predict_logits
from ft_pipelines.core.evaluation.plots import confusion_matrix_figure
from ft_pipelines.core.evaluation.settings import EvaluationParams
from ft_pipelines.core.utils import resolve_runtime
from ft_pipelines.core.utils.runtime import RuntimeParams

logger = logging.getLogger(__name__)
TABLE_COLUMNS = ["top1", "top5", "macro_f1", "ece", "params", "macs", "size_bytes",
                 "latency_ms", "throughput", "recommended", "not_recommended_reason"]
REFERENCE_ROWS = ("linear_probe", *PIXEL_BASELINES)
SHIP_TOLERANCE = 0.01  # "within 1 point of the best top-1"
_REFERENCE_REASON = ("reference for comparison: not exported, so no predict path ships it")


def mark_not_recommended(results: dict[str, Any], name: str, reason: str) -> None:
    """Flag row ``name`` as not to be shipped, with the reason the report prints."""
    results[name]["recommended"] = False
    results[name]["not_recommended_reason"] = reason


def flag_rejected_pruning(results: dict[str, Any], pruning: dict[str, Any],
                          rows: tuple[str, ...] = ("pruned",)) -> None:
    """Flag the pruned model's rows not recommended when the back-off ended above the limit."""
    if pruning.get("accepted") is not False:
        return
    reason = (f"{pruning['val_drop_points']:.2f} validation top-1 points below the fine-tuned "
              f"model after {len(pruning['attempts'])} pruning attempts (limit "
              f"{pruning['max_val_drop']})")
    for name in rows:
        if name in results:
            mark_not_recommended(results, name, reason)


def _ratio_reference(names: list[str]) -> str | None:
    """The row every within-round ratio is taken against: the fine-tuned model as shipped
    (ONNX) when there is one, else the PyTorch one."""
    return next((n for n in ("finetuned_onnx", "finetuned") if n in names), None)


def _calibrated_torch_scores(model: nn.Module, splits: dict[str, ImageData],
                             class_names: list[str], runtime: Any) -> dict[str, Any]:
    """Test metrics of a PyTorch model with its probabilities temperature-scaled: T fitted on
    the validation split (1.0 when there is none), as the export does for ONNX models."""
    cfg = model.backbone_cfg

    def logits(data: ImageData) -> np.ndarray:
        with runtime.autocast():
            return predict_logits(model, data.images, cfg.mean, cfg.std, device=runtime.device)

    val = splits.get("val")
    fitted = (fit_calibration(logits(val), val.labels.numpy()) if val is not None and len(val)
              else {"temperature": 1.0, "not_applied": "no validation images to fit T on"})
    test = splits["test"]
    scores = calibrated_scores(logits(test), test.labels.numpy(), class_names,
                               fitted["temperature"])
    return {**scores, "temperature_not_applied": fitted["not_applied"]}


def evaluate_models(models: dict[str, nn.Module], splits: dict[str, ImageData],
                    class_names: list[str], settings: EvaluationParams,
                    runtime: RuntimeParams | None = None,
                    exported: dict[str, tuple[dict[str, Any], TimedModel]] | None = None,
                    splits_by_size: dict[int, dict[str, ImageData]] | None = None
                    ) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Figure]]:
    """Score every model on the test split, plus the pixel baselines.

    ``models``: ``linear_probe`` (the *pretrained* backbone: a logistic-regression head is
    fitted on its frozen features of the training split) and the trained classifiers.
    ``exported``: rows scored elsewhere (onnxruntime) with what times them. Every PyTorch and
    exported model is timed in the same interleaved rounds (``compare_timings``).
    ``splits_by_size``: the splits decoded at other input sizes; a model whose
    ``backbone_cfg.input_size`` is among them is scored on those (else on ``splits``).
    """
    test = splits["test"]
    resolved = resolve_runtime(runtime)  # runtime.device / runtime.precision
    results, figures, timed_models = {}, {}, {}
    for name, model in models.items():
        if name == "linear_probe":
            model = linear_probe_model(model, splits["train"], len(class_names),
                                       settings.probe_max_iter, str(resolved.device))
        model.eval()
        own = (splits_by_size or {}).get(model.backbone_cfg.input_size, splits)
        scores = _calibrated_torch_scores(model, own, class_names, resolved)
        scores.update(static_cost(model))
        scores.update(resolved.describe())  # where latency/throughput were measured
        results[name], timed_models[name] = scores, model
    extra = {}
    for name, (scores, timed) in (exported or {}).items():
        results[name], extra[name] = scores, timed
    timings = time_torch_models(timed_models, settings, runtime, extra,
                                _ratio_reference([*timed_models, *extra]))
    for name, timing in timings.items():
        results[name].update(timing)
        logger.info("%s: top-1 %.4f, %.2f ms (spread %.2f)", name, results[name]["top1"],
                    timing["latency_ms"], timing["latency_spread_ms"])
    if settings.pixel_baselines:
        results.update(pixel_baselines(splits["train"], test, class_names, settings))
    for name in REFERENCE_ROWS:
        if name in results:
            mark_not_recommended(results, name, _REFERENCE_REASON)
    for name, scores in results.items():
        figures[name] = confusion_matrix_figure(scores["confusion"], class_names,
                                                f"{name}: test confusion")
    return results, comparison_table(results), figures


def comparison_table(results: dict[str, Any]) -> pd.DataFrame:
    """One row per model, the table columns (absent values as None)."""
    return pd.DataFrame([{"model": name, **{c: row.get(c) for c in TABLE_COLUMNS}}
                         for name, row in results.items()])


def _is_recommendable(row: dict[str, Any]) -> bool:
    return row.get("recommended", True) is not False


def _speed_metric(rows: dict[str, Any]) -> tuple[str, str]:
    """(column, words): throughput when every row has it, else latency when every row has it,
    else whichever of the two more rows have."""
    counts = {column: sum(r.get(column) is not None for r in rows.values())
              for column in ("throughput", "latency_ms")}
    column = ("throughput" if counts["throughput"] == len(rows) else
              "latency_ms" if counts["latency_ms"] == len(rows) else
              max(counts, key=lambda c: counts[c]))
    if column == "throughput":
        batch = next(r["throughput_batch"] for r in rows.values() if r.get("throughput"))
        return column, f"throughput at batch {batch}"
    return column, "latency at batch 1"


SHIP_METRICS = {"top1": "top-1", "macro_f1": "macro-F1"}


def ship_recommendation(results: dict[str, Any], metric: str = "top1") -> dict[str, Any]:
    """Which model to ship: among rows not flagged ``recommended: false``, the fastest within
    1 point of the best test ``metric`` (top-1; macro-F1 when the training data is imbalanced,
    see :func:`ship_metric`). Fastest = highest throughput at the table's batch when every
    such row has it, else lowest latency at batch 1 (see :func:`_speed_metric`); a row without
    the timing cannot win and is listed as ``untimed``."""
    if metric not in SHIP_METRICS:
        raise ValueError(f"ship metric {metric!r}: use one of {sorted(SHIP_METRICS)}")
    candidates = {n: r for n, r in results.items()
                  if _is_recommendable(r) and r.get(metric) is not None}
    excluded = {n: r.get("not_recommended_reason", "not recommended") if not _is_recommendable(r)
                else f"no test {SHIP_METRICS[metric]} measured"
                for n, r in results.items() if n not in candidates}
    if not candidates:
        return {"model": None, "excluded": excluded, "metric": metric,
                "reason": "every model is flagged not recommended: ship none of them."}
    best_name = max(candidates, key=lambda n: candidates[n][metric])
    best = candidates[best_name][metric]
    close = {n: r for n, r in candidates.items() if r[metric] >= best - SHIP_TOLERANCE - 1e-12}
    column, words = _speed_metric(close)
    timed = [n for n in close if close[n].get(column) is not None]
    if not timed:
        chosen, words = best_name, f"{SHIP_METRICS[metric]} (no timings measured)"
    else:
        sign = 1.0 if column == "throughput" else -1.0
        chosen = max(timed, key=lambda n: (sign * close[n][column], close[n][metric]))
    return {"model": chosen, "speed_metric": words, "metric": metric,
            "best_top1_model": best_name, "best_top1": best, "best_model": best_name,
            "best": best, "top1": close[chosen]["top1"], "within_1_point": sorted(close),
            "untimed": sorted(set(close) - set(timed)), "excluded": excluded}


def ship_metric(plan: dict[str, Any]) -> tuple[str, str | None]:
    """(metric, why): macro-F1 when the plan found the training data imbalanced, else top-1."""
    balance = (plan.get("recipe") or {}).get("class_balance") or {}
    if not balance.get("imbalanced"):
        return "top1", None
    return "macro_f1", (f"the training data is imbalanced (largest/smallest class "
                        f"{balance['ratio']:.2f} > {balance['threshold']:g})")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _number(value: float | None, fmt: str, scale: float = 1.0) -> str:
    return "n/a" if value is None else format(value / scale, fmt)


def _mmacs(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value / 1e6:.1f}" if value >= 1e5 else f"{value / 1e6:.4f}"


def _latency(row: dict[str, Any]) -> str:
    """Median latency, with the spread of the interleaved rounds (IQR) when measured."""
    text = _number(row.get("latency_ms"), ".2f")
    spread = row.get("latency_spread_ms")
    return text if spread is None or row.get("latency_ms") is None else f"{text} ± {spread:.2f}"


def _results_table(results: dict[str, Any]) -> list[str]:
    batch = next((r["throughput_batch"] for r in results.values()
                  if r.get("throughput_batch") is not None), None)
    lines = ["| model | top-1 | top-5 | macro-F1 | ECE | params | MMACs | size (MB) | "
             f"CPU latency, batch 1 (ms) | throughput (img/s, batch {batch}) | ship? |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        ship = "yes" if _is_recommendable(r) else "no"
        lines.append(
            f"| {name} | {_pct(r['top1'])} | {_pct(r.get('top5'))} | "
            f"{_number(r.get('macro_f1'), '.4f')} | {_number(r.get('ece'), '.4f')} | "
            f"{_number(r.get('params'), ',.0f')} | {_mmacs(r.get('macs'))} | "
            f"{_number(r.get('size_bytes'), '.2f', 1e6)} | {_latency(r)} | "
            f"{_number(r.get('throughput'), '.0f')} | {ship} |")
    return lines


def _ratio(row: dict[str, Any], reference: dict[str, Any], metric: str) -> str:
    """``row`` over ``reference`` for ``latency`` or ``throughput``: the median of per-round
    ratios when both were timed in the same interleaved rounds, else of the medians."""
    rounds = {"latency": "latency_rounds_ms", "throughput": "throughput_rounds"}[metric]
    column = {"latency": "latency_ms", "throughput": "throughput"}[metric]
    mine, theirs = row.get(rounds), reference.get(rounds)
    if mine and theirs and len(mine) == len(theirs):
        return f"{within_round_ratio(mine, theirs):.2f}"
    return f"{row[column] / reference[column]:.2f}"


def _pruning_section(results: dict[str, Any], pruning: dict[str, Any]) -> list[str]:
    ft, pr = results["finetuned"], results["pruned"]
    lines = ["", "## What pruning traded", "",
             f"- MACs: {1 - pr['macs'] / ft['macs']:.1%} fewer; parameters: "
             f"{1 - pr['params'] / ft['params']:.1%} fewer.",
             f"- CPU latency (batch 1): {ft['latency_ms']:.2f} -> {pr['latency_ms']:.2f} ms "
             f"({_ratio(pr, ft, 'latency')}x); throughput {ft['throughput']:.0f} -> "
             f"{pr['throughput']:.0f} img/s ({_ratio(pr, ft, 'throughput')}x).",
             f"- Test top-1: {_pct(ft['top1'])} -> {_pct(pr['top1'])} "
             f"({100 * (pr['top1'] - ft['top1']):+.2f} points).",
             f"- Importance: `{pruning.get('importance')}`, target `{pruning.get('target')}` "
             f"ratio {pruning.get('ratio')}; no layer loses more than "
             f"{pruning.get('max_layer_ratio')} of its channels, pruned layers keep multiples of "
             f"{pruning.get('round_to') or 1}, the classifier's input keeps at least "
             f"{pruning.get('feature_floor')} channels."]
    attempts = pruning.get("attempts") or []
    if attempts and pruning.get("steps"):  # the search: its steps say it all
        lines += frontier_lines(pruning)
    elif attempts:
        lines += ["", f"Validation top-1 of the fine-tuned model: "
                      f"{_pct(pruning.get('val_top1_finetuned'))}; a pruned model may lose at "
                      f"most {pruning.get('max_val_drop')} points, else the ratio is halved.", "",
                  "| attempt | ratio | MACs kept | val top-1 | drop (points) | kept |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {a['attempt']} | {a['ratio']:.3f} | {a.get('macs_ratio', 0):.2f}x | "
                  f"{_pct(a['val_top1'])} | {a['val_drop_points']:.2f} | "
                  f"{'yes' if a['kept'] else ''} |" for a in attempts]
    if attempts and not pruning.get("accepted", True):
        lines += ["", f"**The pruned model is still {pruning['val_drop_points']:.2f} points "
                      f"below the fine-tuned one on the validation split after "
                      f"{len(attempts)} attempts: do not ship it.**"]
    return lines


def frontier_lines(pruning_summary: dict[str, Any]) -> list[str]:
    """Markdown lines of the search's steps (for the report); empty for a fixed ratio."""
    steps = pruning_summary.get("steps") or []
    if not steps:
        return []
    lines = ["", f"Pruning search (target `{pruning_summary.get('target')}`, "
                 f"{pruning_summary.get('share', 0):.0%} of the remaining cost per step, budget "
                 f"{pruning_summary.get('max_val_drop')} validation points below the fine-tuned "
                 f"model's {_pct(pruning_summary.get('val_top1_finetuned'))}):", "",
             "| step | input (px) | MACs | params | ORT latency (ms) | ORT img/s (b64) | "
             "val top-1 | kept |",
             "|---|---|---|---|---|---|---|---|"]
    for r in steps:
        latency = "" if r.get("ort_latency_ms") is None else f"{r['ort_latency_ms']:.2f}"
        speed = "" if r.get("ort_throughput") is None else f"{r['ort_throughput']:.0f}"
        lines.append(f"| {r['step']} | {r.get('input_size', '')} | {r['macs'] / 1e6:.1f} M | "
                     f"{r['params'] / 1e6:.2f} M | {latency} | {speed} | "
                     f"{100 * r['val_top1']:.2f} % | {'yes' if r['kept'] else ''} |")
    before, after = (pruning_summary.get(f"input_size_{k}") for k in ("before", "after"))
    if before and after and after != before:
        lines += ["", f"After the channel steps the search shrank the input from {before} to "
                      f"{after} px (`pruning.input_scales`): the shipped model, its exports and "
                      "predict decode images at that size."]
    return lines


def _baseline_section(results: dict[str, Any]) -> list[str]:
    trained = {n: r for n, r in results.items() if n not in REFERENCE_ROWS}
    cheap = {n: r for n, r in results.items() if n in REFERENCE_ROWS}
    if not trained or not cheap:
        return []
    best_t = max(trained, key=lambda n: trained[n]["top1"])
    best_c = max(cheap, key=lambda n: cheap[n]["top1"])
    gap = 100 * (trained[best_t]["top1"] - cheap[best_c]["top1"])
    verdict = ("fine-tuning beat the cheap alternatives" if gap > 100 * SHIP_TOLERANCE else
               "fine-tuning did NOT clearly beat the cheap alternatives" if gap > 0 else
               "fine-tuning did NOT beat the cheap alternatives")
    return ["", "## Did fine-tuning pay?", "",
            f"Best trained model `{best_t}` {_pct(trained[best_t]['top1'])} vs best cheap "
            f"alternative `{best_c}` {_pct(cheap[best_c]['top1'])}: {gap:+.2f} points, "
            f"{verdict} on this test split ({trained[best_t]['n_samples']} images). "
            "`linear_probe` is logistic regression on frozen pretrained features (its cost: the "
            "headless backbone plus that head); `pixels_*` are fitted on grey downsampled pixels "
            "of the training split."] + [
            f"- `{name}`: {row['note']}." for name, row in cheap.items() if row.get("note")]


def _temperature_notes(rows: dict[str, Any], export_report: dict[str, Any] | None
                       ) -> list[str]:
    """Why a model kept T = 1: the evaluation's fit for PyTorch models, the export's for ONNX."""
    exported = (export_report or {}).get("models") or {}
    reasons = {n: row.get("temperature_not_applied") or
               ((exported.get(n) or {}).get("calibration") or {}).get("not_applied")
               for n, row in rows.items()}
    return [f"- `{n}`: T = 1 kept: {why}." for n, why in reasons.items() if why]


def _calibration_section(results: dict[str, Any], export_report: dict[str, Any] | None = None
                         ) -> list[str]:
    """ECE on the test split before and after each model's temperature (fitted on the
    validation split: by the export for ONNX files, by the evaluation for PyTorch models), and
    why a model kept T = 1."""
    rows = {n: r for n, r in results.items() if r.get("ece_uncalibrated") is not None}
    if not rows:
        return []
    lines = ["", "## Calibrated probabilities", "",
             "Temperature scaling (Guo et al. 2017): the logits are divided by T, fitted on the "
             "validation split by minimising the negative log-likelihood and applied only "
             "where it does not raise the validation ECE (else T = 1: the raw softmax); "
             "predictions are unchanged, probabilities (and `predict`'s) use T. "
             "Test ECE (15 bins):", "",
             "| model | T | ECE before | ECE after |", "|---|---|---|---|"]
    lines += [f"| {n} | {r.get('temperature', 1.0):.3f} | {r['ece_uncalibrated']:.4f} | "
              f"{r['ece']:.4f} |" for n, r in rows.items()]
    notes = _temperature_notes(rows, export_report)
    if notes:
        lines += ["", *notes]
    worse = [n for n, r in rows.items() if r["ece"] > r["ece_uncalibrated"] + 1e-12]
    if worse:
        lines.append(f"\nThe temperature did not lower the test ECE of "
                     f"{', '.join(f'`{n}`' for n in worse)}: the validation split it was fitted "
                     "on is small or differs from the test split.")
    return lines


def _int8_row(name: str, r: dict[str, Any]) -> str:
    if "error" in r:
        return f"| {name} | failed: {r['error'][:80]} |||||||||"
    fp32 = ", ".join(r.get("keep_fp32") or []) or "-"
    return (f"| {name} | {r['format']} | {'channel' if r['per_channel'] else 'tensor'} | "
            f"{'U8S8' if r['activations'] == 'uint8' else 'S8S8'} | {r['calibration_method']} "
            f"| {fp32} | {r['latency_ms']:.2f} ± {r['latency_spread_ms']:.2f} "
            f"({r['latency_ratio']:.2f}x) | {r['throughput']:.0f} ({r['throughput_ratio']:.2f}x) "
            f"| {_pct(r['val_top1'])} | {_pct(r['top1'])} | {'**yes**' if r['chosen'] else ''} |")


def _int8_section(export_report: dict[str, Any] | None) -> list[str]:
    """Every int8 configuration the export tried against the fp32 pruned model."""
    trials = (export_report or {}).get("int8_trials") or []
    search = (export_report or {}).get("int8_search") or {}
    if not trials or "fp32" not in search:
        return []
    fp32 = search["fp32"]
    lines = ["", "## int8: which configuration pays", "",
             "Each configuration of the pruned model, timed in onnxruntime against its fp32 "
             "self in the same interleaved rounds (median ± IQR; ratios are medians of "
             "per-round ratios); chosen on validation top-1, test top-1 reported.", "",
             "| config | format | weights | act/weights | calibration | fp32 layers | "
             "latency, batch 1 (ms) | throughput (img/s) | val top-1 | test top-1 | chosen |",
             "|---|---|---|---|---|---|---|---|---|---|---|",
             f"| fp32 (pruned_onnx) | | | | | | {fp32['latency_ms']:.2f} ± "
             f"{fp32['latency_spread_ms']:.2f} | {fp32['throughput']:.0f} | "
             f"{_pct(fp32['val_top1'])} | {_pct(fp32['top1'])} | |"]
    lines += [_int8_row(r["config"], r) for r in trials]
    verdict = "int8 pays" if search.get("pays") else "int8 does not pay: fp32 is shipped"
    target = ("meets" if search.get("meets_target") else "misses")
    lines += ["", f"**{verdict}.** {search.get('reason', '')}. The kept configuration {target} "
                  "the target of <= 0.75x fp32 latency and >= 1.8x its throughput."]
    return lines


def _ship_section(results: dict[str, Any], metric: str = "top1",
                  why: str | None = None) -> list[str]:
    ship = ship_recommendation(results, metric)
    lines = ["", "## Which model to ship", ""]
    if why:
        lines += [f"Decided on test macro-F1, not top-1: {why}.", ""]
    if ship["model"] is None:
        lines.append(ship["reason"])
    else:
        chosen, name = results[ship["model"]], SHIP_METRICS[metric]
        unit = "" if metric == "top1" else f" {name}"  # top-1 reads as before
        lines.append(
            f"**`{ship['model']}`**: the fastest by {ship['speed_metric']} among the models "
            f"within 1 point of the best test {name} ({_pct(ship['best'])}, "
            f"`{ship['best_model']}`); it reaches {_pct(chosen[metric])}{unit}, "
            f"{_number(chosen.get('latency_ms'), '.2f')} ms at batch 1 and "
            f"{_number(chosen.get('throughput'), '.0f')} img/s. Within 1 point: "
            f"{', '.join(f'`{n}`' for n in ship['within_1_point'])}.")
        better = {n: r for n, r in results.items()
                  if n in REFERENCE_ROWS and r[metric] > chosen[metric] + SHIP_TOLERANCE}
        if better:
            ref = max(better, key=lambda n: better[n][metric])
            lines.append(f"\nCaution: the reference `{ref}` reaches {_pct(better[ref][metric])}"
                         f"{unit}, {100 * (better[ref][metric] - chosen[metric]):.2f} points "
                         "more: on this data the cheap alternative is the better model.")
        if ship["untimed"]:
            lines.append(f"Not timed, so not compared on speed: "
                         f"{', '.join(f'`{n}`' for n in ship['untimed'])}.")
    if ship["excluded"]:
        lines += ["", "Not considered:"]
        lines += [f"- `{name}`: {reason}" for name, reason in ship["excluded"].items()]
    return lines


def _imbalance_section(results: dict[str, Any], why: str, shipped: str | None) -> list[str]:
    """Balanced accuracy and macro-F1 next to top-1, and per-class recall of the fine-tuned
    and the shipped model: top-1 alone hides a neglected small class."""
    lines = ["", "## Class imbalance", "",
             f"{why[0].upper()}{why[1:]}: top-1 rewards the large classes, so balanced accuracy "
             "(mean per-class recall) and macro-F1 stand next to it.", "",
             "| model | top-1 | balanced accuracy | macro-F1 |", "|---|---|---|---|"]
    lines += [f"| {n} | {_pct(r.get('top1'))} | {_pct(r.get('balanced_accuracy'))} | "
              f"{_pct(r.get('macro_f1'))} |" for n, r in results.items()]
    shown = [n for n in dict.fromkeys(["finetuned", shipped]) if n in results
             and results[n].get("per_class")]
    if shown:
        lines += ["", "Per-class recall on the test split:", "",
                  "| class | test images | " + " | ".join(f"`{n}`" for n in shown) + " |",
                  "|---|---|" + "---|" * len(shown)]
        for cls, first in results[shown[0]]["per_class"].items():
            recalls = " | ".join(_pct(results[n]["per_class"][cls]["recall"]) for n in shown)
            lines.append(f"| {cls} | {first['support']} | {recalls} |")
    return lines


def _recipe_lines(plan: dict[str, Any]) -> list[str]:
    """The plan's recipe, one line per ingredient with its reason; the LR range test's plot."""
    recipe = plan.get("recipe")
    if not recipe:
        return []
    lines = ["", "Training recipe (`plan[\"recipe\"]`):", ""]
    lines += [f"- {name}: `{entry['value']}` ({entry['source']}): {entry['reason']}"
              for name, entry in recipe.items()]
    if recipe.get("lr_find", {}).get("value"):
        lines.append("- the LR range test's curve and pick: `lr_find_plot` "
                     "(08_reporting/lr_find.png)")
    return lines


def render_report(plan: dict[str, Any], results: dict[str, Any], pruning: dict[str, Any],
                  profile: dict[str, Any], export_report: dict[str, Any] | None = None) -> str:
    """A short Markdown report: what was chosen and why, what it reached, what pruning traded,
    whether fine-tuning beat the cheap alternatives, and which model to ship."""
    lines = ["# ft_pipelines report", "",
             f"Data: `{profile.get('source')}`, {profile['num_images']} images, "
             f"{profile['num_classes']} classes.", "",
             f"## Strategy: `{plan['strategy']}` ({plan['decided_by']})", ""]
    lines += [f"- {reason}" for reason in plan["reasons"]]
    lines += ["", f"Regulariser: `{plan['regularizer']}`; trainable blocks: "
              f"{plan['trainable_blocks']}; epochs: {plan['epochs']}."]
    lines += _recipe_lines(plan)
    lines += ["", "## Results on the test split", ""]
    lines += _results_table(results)
    metric, why = ship_metric(plan)
    if why:
        lines += _imbalance_section(results, why, ship_recommendation(results, metric)["model"])
    if "finetuned" in results and "pruned" in results:
        lines += _pruning_section(results, pruning)
    lines += _calibration_section(results, export_report)
    lines += _int8_section(export_report)
    lines += _baseline_section(results)
    lines += _ship_section(results, metric, why)
    return "\n".join(lines) + "\n"

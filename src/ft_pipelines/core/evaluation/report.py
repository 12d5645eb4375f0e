"""Evaluation on the test split: the linear-probe reference, the fine-tuned and the pruned model,
with accuracy, calibration and cost side by side, and the report a person reads first."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from ft_pipelines.core.data import ImageData
from ft_pipelines.core.evaluation.cost import cost_metrics
from ft_pipelines.core.evaluation.metrics import classification_metrics, predict
from ft_pipelines.core.evaluation.plots import confusion_matrix_figure
from ft_pipelines.core.similarity import extract_features
from ft_pipelines.core.utils import resolve_runtime

logger = logging.getLogger(__name__)
TABLE_COLUMNS = ["top1", "top5", "macro_f1", "ece", "params", "macs", "size_bytes",
                 "latency_ms", "throughput"]


def linear_probe_probs(pretrained: nn.Module, train: ImageData, test: ImageData,
                       max_iter: int = 2000) -> np.ndarray:
    """Logistic regression on frozen pretrained features: the reference point."""
    train_f = extract_features(pretrained, train.images, record_bn=False).penultimate
    test_f = extract_features(pretrained, test.images, record_bn=False).penultimate
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, C=0.1))
    probe.fit(train_f, train.labels.numpy())
    probs = np.zeros((len(test), int(train.labels.max()) + 1))
    probs[:, probe.classes_] = probe.predict_proba(test_f)
    return probs


def evaluate_models(models: dict[str, nn.Module], splits: dict[str, ImageData],
                    class_names: list[str], params: dict[str, Any]
                    ) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Figure]]:
    """``models``: ``linear_probe`` (the pretrained backbone) and the trained classifiers."""
    test = splits["test"]
    runtime = resolve_runtime(params)  # runtime.device / runtime.precision
    results, figures = {}, {}
    for name, model in models.items():
        model.eval()
        cfg = model.backbone_cfg
        if name == "linear_probe":
            probs = linear_probe_probs(model, splits["train"], test,
                                       int(params.get("probe_max_iter", 2000)))
        else:
            with runtime.autocast():
                probs = predict(model, test.images, cfg.mean, cfg.std, device=runtime.device)
        scores = classification_metrics(probs, test.labels.numpy(), class_names)
        scores.update(cost_metrics(model, params))
        scores.update(runtime.describe())  # where latency/throughput were measured
        results[name] = scores
        figures[name] = confusion_matrix_figure(scores["confusion"], class_names,
                                                f"{name}: test confusion")
        logger.info("%s: top-1 %.4f, %.1f MMACs, %.2f ms", name, scores["top1"],
                    scores["macs"] / 1e6, scores["latency_ms"])
    table = pd.DataFrame([{"model": k, **{c: v.get(c) for c in TABLE_COLUMNS}}
                          for k, v in results.items()])
    return results, table, figures


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def render_report(plan: dict[str, Any], results: dict[str, Any], pruning: dict[str, Any],
                  profile: dict[str, Any]) -> str:
    """A short Markdown report: what was chosen and why, what it reached, what pruning traded."""
    lines = ["# ft_pipelines report", "",
             f"Data: `{profile.get('source')}`, {profile['num_images']} images, "
             f"{profile['num_classes']} classes.", "",
             f"## Strategy: `{plan['strategy']}` ({plan['decided_by']})", ""]
    lines += [f"- {reason}" for reason in plan["reasons"]]
    lines += ["", f"Regulariser: `{plan['regularizer']}`; trainable blocks: "
              f"{plan['trainable_blocks']}; epochs: {plan['epochs']}.", "",
              "## Results on the test split", "",
              "| model | top-1 | top-5 | macro-F1 | ECE | params | MMACs | size (MB) | "
              "CPU latency, batch 1 (ms) | throughput (img/s, batch "
              f"{next(iter(results.values()))['throughput_batch']}) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {_pct(r['top1'])} | {_pct(r['top5'])} | {r['macro_f1']:.4f} | "
                     f"{r['ece']:.4f} | {r['params']:,} | {r['macs'] / 1e6:.1f} | "
                     f"{r['size_bytes'] / 1e6:.2f} | {r['latency_ms']:.2f} | "
                     f"{r['throughput']:.0f} |")
    if "finetuned" in results and "pruned" in results:
        ft, pr = results["finetuned"], results["pruned"]
        lines += ["", "## What pruning traded", "",
                  f"- MACs: {1 - pr['macs'] / ft['macs']:.1%} fewer; parameters: "
                  f"{1 - pr['params'] / ft['params']:.1%} fewer.",
                  f"- CPU latency (batch 1): {ft['latency_ms']:.2f} -> {pr['latency_ms']:.2f} ms;"
                  f" throughput {ft['throughput']:.0f} -> {pr['throughput']:.0f} img/s.",
                  f"- Test top-1: {_pct(ft['top1'])} -> {_pct(pr['top1'])} "
                  f"({100 * (pr['top1'] - ft['top1']):+.2f} points).",
                  f"- Importance: `{pruning.get('importance')}`, target "
                  f"`{pruning.get('target')}` ratio {pruning.get('ratio')}."]
    return "\n".join(lines) + "\n"

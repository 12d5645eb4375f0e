"""Does pruning pay on the clock? Prune a fine-tuned model at several MACs ratios and
``round_to`` values (structure only: no recovery training, so accuracy is not measured here)
and time each against the unpruned model: latency at batch 1, throughput at batch 64, on a fixed
number of threads.

Example (see benchmarks/README.md)::

    python benchmarks/pruning_speed.py \
        --model data/06_models/finetuned_model.safetensors \
        --importance data/07_model_output/channel_importance.parquet \
        --ratios 0.35 0.5 --round-to none 8 16 --threads 2 \
        --out benchmarks/results/pruning_speed.json --markdown docs/_pruning_speed_table.md
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from ft_pipelines.core.evaluation import measure_latency, measure_throughput
from ft_pipelines.core.models import load_model_file, newest_artifact
from ft_pipelines.core.pruning import (
    channel_groups,
    importance_table,
    l1_scores,
    prunable_bn_layers,
    prune_by_importance,
)
from ft_pipelines.core.utils import classifier_name, count_macs_params

logger = logging.getLogger("pruning_speed")


def _cpu_clock_ms(model: nn.Module, batch: torch.Tensor, runs: int) -> float:
    """Median process CPU time of one forward pass: with one thread, a busy machine's stand-in
    for wall time on an idle core (other processes do not count, cache sharing still does)."""
    timings = []
    with torch.inference_mode():
        for index in range(runs + 3):
            start = time.process_time()
            model(batch)
            if index >= 3:  # warm-up
                timings.append((time.process_time() - start) * 1000.0)
    return statistics.median(timings)


def _timings(model: nn.Module, size: int, runs: int, batch: int, cpu_clock: bool = False
             ) -> dict[str, float]:
    if runs == 0:  # --runs 0: structure only (MACs, params), e.g. on a busy machine
        return {"latency_ms": float("nan"), "throughput": float("nan")}
    if cpu_clock:
        many_ms = _cpu_clock_ms(model, torch.randn(batch, 3, size, size), max(3, runs // 10))
        return {"latency_ms": _cpu_clock_ms(model, torch.randn(1, 3, size, size), runs),
                "throughput": batch / (many_ms / 1000.0)}
    shape = (3, size, size)
    latency = measure_latency(model, shape, 1, warmup=10, runs=runs)["median_ms"]
    throughput = measure_throughput(model, shape, batch, warmup=2, runs=max(3, runs // 10))
    return {"latency_ms": latency, "throughput": throughput}


def _pruned(model: nn.Module, table: pd.DataFrame, ratio: float, round_to: int | None,
            max_layer_ratio: float, min_feature_channels: int) -> tuple[nn.Module, dict]:
    pruned = copy.deepcopy(model)
    size = model.backbone_cfg.input_size
    classifier = pruned.get_submodule(classifier_name(pruned))
    summary = prune_by_importance(
        pruned, table, torch.randn(1, 3, size, size), ratio, target="macs",
        ignored_layers=[classifier], max_layer_ratio=max_layer_ratio, round_to=round_to,
        feature_floor=max(classifier.out_features, min_feature_channels))
    return pruned.eval(), summary


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    torch.set_num_threads(args.threads)
    model = load_model_file(newest_artifact(args.model)).eval()
    size = model.backbone_cfg.input_size
    example = torch.randn(1, 3, size, size)
    if args.importance == "l1":  # no table at hand: rank by BN scale magnitude
        layers = prunable_bn_layers(model)
        classifier = model.get_submodule(classifier_name(model))
        table = importance_table(l1_scores(model, layers), None,
                                 channel_groups(model, example, layers, [classifier]))
    else:
        table = pd.read_parquet(args.importance)
    macs, params = count_macs_params(model, example)
    base = {"variant": "fine-tuned", "ratio": 0.0, "round_to": None, "macs": macs,
            "params": params, **_timings(model, size, args.runs, args.batch, args.cpu_clock)}
    rows = [base]
    for ratio in args.ratios:
        for round_to in args.round_to:
            pruned, summary = _pruned(model, table, ratio, round_to, args.max_layer_ratio,
                                      args.min_feature_channels)
            rows.append({"variant": "pruned", "ratio": ratio, "round_to": round_to,
                         "macs": summary["macs_after"], "params": summary["params_after"],
                         **_timings(pruned, size, args.runs, args.batch, args.cpu_clock)})
            logger.info("%s", rows[-1])
    for row in rows:
        row["macs_x"] = row["macs"] / base["macs"]
        row["latency_x"] = row["latency_ms"] / base["latency_ms"]
        row["throughput_x"] = row["throughput"] / base["throughput"]
    return rows


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    clock = "process CPU time" if args.cpu_clock else "wall clock"
    lines = [f"Input {args.input_note}; {args.threads} threads; {platform.machine()}; {clock}; "
             f"latency = median of {args.runs} batch-1 passes, throughput at batch "
             f"{args.batch}.", "",
             "| model | MACs ratio target | round_to | MMACs | MACs x | latency b1 (ms) | "
             "latency x | throughput (img/s) | throughput x |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['ratio'] or '-'} | {r['round_to'] or '-'} | "
                     f"{r['macs'] / 1e6:.1f} | {r['macs_x']:.2f} | {r['latency_ms']:.2f} | "
                     f"{r['latency_x']:.2f} | {r['throughput']:.0f} | {r['throughput_x']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="fine-tuned model artifact (file/folder)")
    parser.add_argument("--importance", required=True,
                        help="channel_importance parquet of this model, or 'l1'")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.35, 0.5])
    parser.add_argument("--round-to", nargs="+", default=["none", "8", "16"],
                        type=lambda v: None if v.lower() in ("none", "null") else int(v))
    parser.add_argument("--max-layer-ratio", type=float, default=0.75)
    parser.add_argument("--min-feature-channels", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=50, help="0: no timing, MACs only")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--cpu-clock", action="store_true",
                        help="time by process CPU time (use with --threads 1 on a busy machine)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--input-note", default="the demo's fine-tuned EfficientNet-Lite0, 96 px")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    rows = run(args)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2))
    table = markdown(rows, args)
    if args.markdown:
        args.markdown.write_text(table)
    logger.info("\n%s", table)


if __name__ == "__main__":
    main()

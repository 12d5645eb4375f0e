"""The pruning search (``pruning.ratio: auto``) against fixed ratios, with and without
distillation, MACs against latency as the target (issue 23).

    nice python benchmarks/bench_frontier.py --datasets sklearn_digits --seeds 0 1 2 \
        --threads 2 --markdown docs/_bench_frontier_table.md

Per (data set, seed) the chain's own core functions run once: ingestion (split seed 0),
similarity and the decision matrix's plan, surgery and fine-tuning (seeded), the Taylor-gate
channel importance; the fine-tuned model and its importance table are cached under
``benchmarks/results/frontier/`` and every pruning variant starts from them
(``prune_and_finetune`` with conf/base's ``pruning`` block and the variant's overrides). Each
pruned model is exported to ONNX and timed in onnxruntime against the fine-tuned export in
interleaved rounds (``compare_timings``: median of the rounds, IQR spread, within-round
ratios); test top-1 comes from the PyTorch model. Rows go to
``benchmarks/results/frontier.csv`` one by one; a restarted run skips the finished cells.

``--folder PATH`` adds an image folder (one sub-folder per class) as the data set ``folder``;
``/work/shared/make_synthetic_folder.py`` builds one offline.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars in a background run's log

import onnxruntime as ort  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from study import project_params  # noqa: E402 (benchmarks/ is on sys.path as a script)
from torch import nn  # noqa: E402

from ft_pipelines.core.data import (  # noqa: E402
    ImageData,
    build_images_table,
    load_records,
    split_image_data,
    stratified_subset,
    validate_records,
)
from ft_pipelines.core.evaluation import compare_timings, predict  # noqa: E402
from ft_pipelines.core.export import OnnxRunner, export_onnx, onnx_timed_model  # noqa: E402
from ft_pipelines.core.models import (  # noqa: E402
    apply_surgery,
    load_backbone,
    load_model_file,
    save_model_file,
)
from ft_pipelines.core.pruning import input_sizes, prune_and_finetune, score_channels  # noqa: E402
from ft_pipelines.core.regularizers import delta_attention  # noqa: E402
from ft_pipelines.core.similarity import similarity_report  # noqa: E402
from ft_pipelines.core.strategy import select_strategy  # noqa: E402
from ft_pipelines.core.training import finetune_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
logger = logging.getLogger("bench_frontier")

#: variant name -> overrides of conf/base's ``pruning`` block: every variant is today's default
#: (recovery, distillation, floors) but for what its name says. The tables of earlier sessions
#: (older recovery settings) came from this file at commit 55a8583.
VARIANTS: dict[str, dict[str, Any]] = {
    "fixed-0.30": {"ratio": 0.3, "target": "macs"},
    "fixed-0.55": {"ratio": 0.55, "target": "macs"},
    "fixed-0.75": {"ratio": 0.75, "target": "macs"},
    "auto": {"ratio": "auto", "target": "macs"},
    "auto-nodistill": {"ratio": "auto", "target": "macs", "distill": None},
    "auto-latency": {"ratio": "auto", "target": "latency"},
    "auto-fullsize": {"ratio": "auto", "target": "macs", "input_scales": []},
}
FIELDS = ["dataset", "seed", "variant", "ratio", "target", "distill", "input_size",
          "recovery_epochs",
          "recovery_min_steps", "recovery_trained_epochs", "step", "threads", "train_images",
          "test_images", "finetuned_test_top1",
          "test_top1", "val_top1_finetuned", "val_top1", "accepted", "search_steps",
          "macs_ratio", "params_ratio", "finetuned_latency_ms", "finetuned_latency_spread_ms",
          "latency_ms", "latency_spread_ms", "latency_ratio", "finetuned_throughput",
          "finetuned_throughput_spread", "throughput", "throughput_spread",
          "throughput_ratio", "timing_rounds", "wall_s", "load_1min"]
STEP_KEYS = ("step", "input_size", "ratio", "pruned_share", "macs_ratio", "cost_fraction",
             "ort_latency_ms", "ort_throughput", "val_top1", "val_drop_points", "within_limit",
             "kept")


@dataclass
class Context:
    """One (data set, seed): splits, class names, the fine-tuned model and its importance."""

    splits: dict[str, ImageData]
    classes: list[str]
    model: nn.Module
    table: pd.DataFrame
    by_size: dict[int, dict[str, ImageData]]  # the splits at the search's smaller input sizes


def load_splits(dataset: str, folder: Path | None, params: dict[str, Any]
                ) -> tuple[dict[int, dict[str, ImageData]], list[str], dict]:
    """Ingest as the data_ingestion node does (conf/base's splits, split seed); the splits
    decoded at backbone.input_size and at the pruning search's smaller sizes, by size."""
    ingestion = params["ingestion"]
    source, path = ("image_folder", folder) if dataset == "folder" else (dataset, None)
    good, bad = validate_records(load_records(source, path), ingestion.get("on_bad_image"))
    table, classes, profile = build_images_table(
        good, ingestion.get("splits"), int(ingestion.get("seed", 0)),
        min_per_class=int(ingestion.get("min_per_class", 2)),
        on_duplicate=ingestion.get("on_duplicate", "error"), bad_images=bad)
    profile["source"] = source
    size = int(params["backbone"]["input_size"])
    sizes = [size, *input_sizes(size, params["pruning"].get("input_scales", []))]
    return {s: split_image_data(table, s, None) for s in sizes}, classes, profile


def finetune_once(splits: dict[str, ImageData], profile: dict, params: dict[str, Any],
                  seed: int) -> nn.Module:
    """Similarity -> plan (decision matrix) -> surgery -> fine-tuning, seeded."""
    spec = params["backbone"]
    backbone = load_backbone(spec.get("source", "bundled"), spec.get("architecture"),
                               spec.get("weights"), spec.get("path"), int(spec["input_size"]),
                               spec.get("library", "auto"))
    similarity = params["similarity"]
    sample = stratified_subset(splits["train"], similarity.get("max_images"),
                               int(similarity.get("seed", 0)))
    metrics, layers = similarity_report(backbone, sample, similarity)
    finetune = {**params["finetune"], "seed": seed, "progress": False, "resume": False}
    plan = select_strategy(profile, metrics, layers, metrics["blocks"], params["strategy"],
                           batch_size=int(finetune["batch_size"]))
    torch.manual_seed(seed)  # the new head is drawn from torch's global generator
    model = apply_surgery(backbone, plan["num_classes"], plan["trainable_blocks"],
                          plan["drop_last_blocks"], plan["reinitialize"], seed)
    regularizer = {**finetune.get("regularizer", {}), **plan.get("regularizer", {})}
    attention = None
    if regularizer.get("name") == "delta":
        probe = stratified_subset(splits["train"], finetune.get("delta_probe_images"), seed)
        attention = delta_attention(model, probe, seed)
    model, _ = finetune_model(model, splits, plan, finetune, attention, None)
    logger.warning("fine-tuned (%s, %d epochs)", plan["strategy"], plan["epochs"])
    return model.cpu().eval()


def context(dataset: str, folder: Path | None, seed: int, params: dict[str, Any]) -> Context:
    """The (data set, seed)'s fine-tuned model and importance table, cached on disk."""
    by_size, classes, profile = load_splits(dataset, folder, params)
    splits = by_size[int(params["backbone"]["input_size"])]
    cache = RESULTS / "frontier" / f"{dataset}-seed{seed}"
    model_path, table_path = cache / "finetuned.safetensors", cache / "importance.parquet"
    if model_path.exists() and table_path.exists():
        return Context(splits, classes, load_model_file(model_path), pd.read_parquet(table_path),
                       by_size)
    model = finetune_once(splits, profile, params, seed)
    importance = {**params["importance"], "seed": seed}
    train = stratified_subset(splits["train"], importance.get("max_images"), seed)
    table = score_channels(copy.deepcopy(model), train, "taylor_gate", importance,
                           {"device": "cpu"})
    cache.mkdir(parents=True, exist_ok=True)
    table.to_parquet(table_path)
    save_model_file(model, model_path)
    return Context(splits, classes, model, table, by_size)


def test_top1(model: nn.Module, data: ImageData) -> float:
    cfg = model.backbone_cfg
    probs = predict(model, data.images, cfg.mean, cfg.std)
    return float((probs.argmax(1) == data.labels.numpy()).mean())


def onnx_runner(model: nn.Module, classes: list[str], threads: int) -> OnnxRunner:
    cfg = model.backbone_cfg
    exported = export_onnx(copy.deepcopy(model).cpu().eval(), classes, int(cfg.input_size),
                           list(cfg.mean), list(cfg.std))
    return OnnxRunner(exported, threads=threads)


def timings(finetuned: OnnxRunner, pruned: OnnxRunner, rounds: int) -> dict[str, Any]:
    """Both exports in the same interleaved rounds; ratios within a round."""
    batch = 64
    result = compare_timings({"finetuned": onnx_timed_model(finetuned, batch),
                              "pruned": onnx_timed_model(pruned, batch)}, batch,
                             rounds=rounds, runs=7, warmup=3, reference="finetuned")
    base, new = result["finetuned"], result["pruned"]
    return {"finetuned_latency_ms": base["latency_ms"],
            "finetuned_latency_spread_ms": base["latency_spread_ms"],
            "finetuned_throughput": base["throughput"],
            "finetuned_throughput_spread": base["throughput_spread"],
            "latency_ms": new["latency_ms"], "latency_spread_ms": new["latency_spread_ms"],
            "latency_ratio": new["latency_ratio"], "throughput": new["throughput"],
            "throughput_spread": new["throughput_spread"],
            "throughput_ratio": new["throughput_ratio"], "timing_rounds": rounds}


def run_cell(ctx: Context, variant: str, pruning: dict[str, Any], threads: int,
             rounds: int) -> dict[str, Any]:
    """Prune the cached fine-tuned model with ``pruning``, test and time it."""
    started = time.perf_counter()
    model, summary, _ = prune_and_finetune(ctx.model, ctx.table, ctx.splits, pruning, None,
                                           {"device": "cpu", "precision": "fp32",
                                            "threads": threads}, ctx.by_size)
    wall = time.perf_counter() - started
    steps = summary.get("steps") or []
    row = {"variant": variant, "ratio": pruning["ratio"], "target": pruning["target"],
           "distill": pruning.get("distill") is not None,
           "recovery_epochs": pruning["recovery_epochs"],
           "recovery_min_steps": pruning.get("recovery_min_steps"),
           "recovery_trained_epochs": (summary.get("recovery") or {}).get("epochs"),
           "step": pruning["step"],
           "input_size": model.backbone_cfg.input_size,
           "test_top1": test_top1(model, ctx.by_size[model.backbone_cfg.input_size]["test"]),
           "val_top1_finetuned": summary["val_top1_finetuned"], "val_top1": summary["val_top1"],
           "accepted": summary["accepted"], "search_steps": max(0, len(steps) - 1),
           "macs_ratio": summary["macs_after"] / summary["macs_before"],
           "params_ratio": summary["params_after"] / summary["params_before"],
           "wall_s": round(wall, 1)}
    finetuned = onnx_runner(ctx.model, ctx.classes, threads)
    row.update(timings(finetuned, onnx_runner(model, ctx.classes, threads), rounds))
    row["load_1min"] = os.getloadavg()[0]
    row["steps_detail"] = [{k: step.get(k) for k in STEP_KEYS} for step in steps]
    return row


def write_steps(path: Path, row: dict[str, Any]) -> None:
    """The search's steps of a cell (JSON lines beside the CSV): why it stopped where it did."""
    if row.get("steps_detail"):
        keys = ("dataset", "seed", "variant")
        with path.with_suffix(".steps.jsonl").open("a") as handle:
            handle.write(json.dumps({**{k: row[k] for k in keys},
                                     "steps": row["steps_detail"]}) + "\n")


def finished(path: Path) -> set[tuple[str, int, str]]:
    if not path.exists():
        return set()
    frame = pd.read_csv(path)
    return {(r.dataset, int(r.seed), r.variant) for r in frame.itertuples()}


def append_row(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({k: row.get(k) for k in FIELDS})


def run(args: argparse.Namespace) -> None:
    params = project_params()
    torch.set_num_threads(args.threads)
    done = finished(args.out)
    for dataset in args.datasets:
        for seed in args.seeds:
            todo = [v for v in args.variants if (dataset, seed, v) not in done]
            if not todo:
                continue
            ctx = context(dataset, args.folder, seed, params)
            base = {"dataset": dataset, "seed": seed, "threads": args.threads,
                    "train_images": len(ctx.splits["train"]),
                    "test_images": len(ctx.splits["test"]),
                    "finetuned_test_top1": test_top1(ctx.model, ctx.splits["test"])}
            for variant in todo:
                pruning = {**params["pruning"], **args.overrides, **VARIANTS[variant],
                           "seed": seed}
                row = {**base, **run_cell(ctx, variant, pruning, args.threads, args.rounds)}
                append_row(args.out, row)
                write_steps(args.out, row)
                logger.warning("%s", {k: row[k] for k in ("dataset", "seed", "variant",
                                                          "test_top1", "macs_ratio",
                                                          "latency_ratio", "wall_s")})


def _mean_std(values: pd.Series, scale: float = 1.0, digits: int = 2) -> str:
    mean, std = scale * values.mean(), scale * (values.std() if len(values) > 1 else 0.0)
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def kept_within(path: Path) -> dict[tuple[str, int, str], bool]:
    """Per searched cell: was the step the search kept judged within the budget?"""
    steps = path.with_suffix(".steps.jsonl")
    if not steps.exists():
        return {}
    cells = [json.loads(line) for line in steps.read_text().splitlines() if line.strip()]
    return {(c["dataset"], int(c["seed"]), c["variant"]):
            any(s["kept"] and s["within_limit"] for s in c["steps"]) for c in cells}


def markdown(path: Path) -> str:
    """Mean ± std over seeds per (data set, variant)."""
    frame = pd.read_csv(path)
    frame["drop"] = 100 * (frame["finetuned_test_top1"] - frame["test_top1"])
    within = kept_within(path)
    frame["kept_within"] = [within.get((r.dataset, int(r.seed), r.variant))
                            for r in frame.itertuples()]
    lines = ["| data set | variant | seeds | input px | test top-1 % | drop (points) | "
             "MACs kept | "
             "ORT latency b1 (x fine-tuned) | ORT throughput b64 (x) | latency ms (spread) | "
             "search kept a step within budget | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (dataset, variant), rows in frame.groupby(["dataset", "variant"], sort=False):
        known = rows["kept_within"].dropna()
        kept = f"{int(known.sum())}/{len(known)}" if len(known) else "n/a"
        lines.append(
            f"| {dataset} | {variant} | {len(rows)} | "
            f"{'/'.join(str(int(v)) for v in rows.get('input_size', pd.Series(dtype=float)))} | "
            f"{_mean_std(rows.test_top1, 100)} | "
            f"{_mean_std(rows['drop'])} | {_mean_std(rows.macs_ratio)} | "
            f"{_mean_std(rows.latency_ratio)} | {_mean_std(rows.throughput_ratio)} | "
            f"{rows.latency_ms.median():.2f} ({rows.latency_spread_ms.median():.2f}) | "
            f"{kept if rows.ratio.iloc[0] == 'auto' else ''} | "
            f"{_mean_std(rows.wall_s, digits=0)} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=["sklearn_digits"],
                        choices=["sklearn_digits", "folder"])
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="pruning overrides for every cell, e.g. recovery_epochs=2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS / "frontier.csv")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)
    if "folder" in args.datasets and args.folder is None:
        parser.error("--datasets folder needs --folder PATH")
    args.overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    ort.set_default_logger_severity(3)
    if args.datasets:
        run(args)
    if args.markdown:
        args.markdown.write_text(markdown(args.out))


if __name__ == "__main__":
    main()

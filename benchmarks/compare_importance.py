"""TransTailor's target-aware Taylor gates against L1-magnitude and random pruning.

    python benchmarks/compare_importance.py --ratios 0.25 0.4 --target channels --steps 1 \
        --finetune-epochs 2 --seeds 0 1 2 --threads 1 --markdown docs/_importance_table.md

Starts from the latest ``finetuned_model``, ``channel_importance`` and ``images`` of the default
run (``kedro run`` first), prunes at each MACs ratio with each importance and seed through the same
code as the pruning stage (``prune_and_finetune``), and records test top-1, MACs and params in
``benchmarks/results/importance.csv`` (resumable: finished rows are skipped). ``--markdown``
writes the mean +- std table.
"""

from __future__ import annotations

import argparse
import copy
import csv
import logging
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from ft_pipelines.core.data import split_image_data
from ft_pipelines.core.evaluation import classification_metrics, predict
from ft_pipelines.core.models import load_model_file
from ft_pipelines.core.pruning import prune_and_finetune, score_channels

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ["importance", "target", "ratio", "seed", "test_top1", "val_top1", "macs_before",
          "macs_after",
          "params_after", "seconds"]


def latest(pattern: str) -> Path:
    return sorted(ROOT.glob(pattern))[-1]


def done_rows(path: Path) -> set[tuple[str, float, int]]:
    if not path.exists():
        return set()
    frame = pd.read_csv(path)
    return {(r.importance, float(r.ratio), int(r.seed)) for r in frame.itertuples()}


def run_cell(model, taylor_table, splits, method: str, ratio: float, seed: int,
             params: dict) -> dict:
    started = time.perf_counter()
    table = (taylor_table if method == "taylor_gate"
             else score_channels(copy.deepcopy(model), splits["train"], method, {"seed": seed}))
    settings = {**params, "importance": method, "ratio": ratio, "seed": seed}
    pruned, summary, history = prune_and_finetune(model, table, splits, settings)
    cfg = pruned.backbone_cfg
    probs = predict(pruned, splits["test"].images, cfg.mean, cfg.std)
    top1 = classification_metrics(probs, splits["test"].labels.numpy(),
                                   [str(i) for i in range(probs.shape[1])])["top1"]
    return {"importance": method, "target": settings["target"], "ratio": ratio, "seed": seed,
            "test_top1": top1,
            "val_top1": float(history["val_acc"].max()), "macs_before": summary["macs_before"],
            "macs_after": summary["macs_after"], "params_after": summary["params_after"],
            "seconds": round(time.perf_counter() - started, 1)}


def markdown(path: Path) -> str:
    frame = pd.read_csv(path)
    frame["macs_cut"] = 1 - frame["macs_after"] / frame["macs_before"]
    summary = frame.groupby(["ratio", "importance"]).agg(
        top1_mean=("test_top1", "mean"), top1_std=("test_top1", "std"), runs=("seed", "count"),
        macs_cut=("macs_cut", "mean"))
    lines = ["| ratio | importance | test top-1 (mean ± std) | runs | MACs removed |",
             "|---|---|---|---|---|"]
    for (ratio, method), row in summary.iterrows():
        lines.append(f"| {ratio} | {method} | {100 * row.top1_mean:.2f} ± "
                     f"{100 * (row.top1_std if row.runs > 1 else 0):.2f} | {int(row.runs)} | "
                     f"{row.macs_cut:.1%} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.35, 0.5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["taylor_gate", "l1", "random"])
    parser.add_argument("--finetune-epochs", type=int, default=None)
    parser.add_argument("--target", choices=["channels", "macs"], default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/importance.csv")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    params = yaml.safe_load((ROOT / "conf/base/parameters_pruning.yml").read_text())["pruning"]
    overrides = {"finetune_epochs": args.finetune_epochs, "target": args.target,
                 "steps": args.steps}
    params.update({k: v for k, v in overrides.items() if v is not None})
    model = load_model_file(latest("data/06_models/finetuned_model.safetensors/*/*"))
    taylor = pd.read_parquet(latest("data/07_model_output/channel_importance.parquet/*/*"))
    images = pd.read_parquet(latest("data/03_primary/images.parquet/*/*"))
    splits = split_image_data(images, model.backbone_cfg.input_size, None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    finished = done_rows(args.out)
    for ratio in args.ratios:
        for seed in args.seeds:
            for method in args.methods:
                if (method, ratio, seed) in finished:
                    continue
                row = run_cell(model, taylor, splits, method, ratio, seed, params)
                new_file = not args.out.exists()
                with args.out.open("a", newline="") as handle:
                    writer = csv.DictWriter(handle, fieldnames=FIELDS)
                    if new_file:
                        writer.writeheader()
                    writer.writerow(row)
                logging.warning("%s", row)
    if args.markdown:
        args.markdown.write_text(markdown(args.out))


if __name__ == "__main__":
    main()

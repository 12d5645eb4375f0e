"""Recipe study (issue 19): the training recipe on/off on small and imbalanced data.

Per (dataset, seed): the **default chain** exactly as ``kedro run`` plans it
(``plan_finetuning``: strategy.mode auto -> pilot or matrix, the plan's recipe; the pilot's
winner retrains or continues as ``strategy.pilot.restart_max_train_images`` says), then, at the
strategy the chain picked, the recipe **off** (every ingredient off, class_balance none),
**each ingredient alone**, and the plan's **default** recipe without the pilot. Datasets:
``digits6`` (sklearn digits, 10 per class -> 6/2/2, as ``ingestion.max_per_class=10`` with
study.py's small splits), ``lfw_small`` (scikit-image's LFW
subset, faces / non-faces, the same 10 per class -> 6/2/2) and ``imbalanced`` (an image
folder built from digits here, 10:1 between the largest and the smallest class, the project's
splits). Reuses benchmarks/study.py's helpers (backbone, project parameters, test scores).
Rows are appended to a CSV; a restart skips the cells already there. See benchmarks/study.md.
"""

from __future__ import annotations

import argparse
import copy
import csv
import logging
import time
from functools import cache
from pathlib import Path
from typing import Any

import study as base  # benchmarks/study.py (this folder is on sys.path when run as a script)
import torch

from ft_pipelines.core.data import (
    build_images_table,
    load_records,
    split_image_data,
    stratified_subset,
    validate_records,
)
from ft_pipelines.core.evaluation import classification_metrics, pixel_baselines, predict
from ft_pipelines.core.models import apply_surgery
from ft_pipelines.core.similarity import similarity_report
from ft_pipelines.core.strategy import (
    apply_recipe,
    plan_after_pilot,
    recipe_summary,
    run_pilot,
)
from ft_pipelines.core.training import finetune_model
from ft_pipelines.params import FinetuneParams, StrategyParams
from ft_pipelines.pipelines.strategy_selection.nodes import plan_finetuning

logger = logging.getLogger("study_recipe")
DATASETS = ("digits6", "lfw_small", "imbalanced")
SMALL = {"digits6": "sklearn_digits", "lfw_small": "lfw_faces"}  # study.py's small size
IMBALANCE = (100, 10)  # images per class of the largest and the smallest class (10:1)
# one ingredient on, the others off: finetune.* keys (dotted) -> value
VARIANTS: dict[str, dict[str, Any]] = {
    "off": {},
    "class_balance=weights": {"class_balance": "weights"},
    "class_balance=sampler": {"class_balance": "sampler"},
    "ema": {"ema": {"decay": 0.998, "warmup": True}},
    "policy=trivial": {"augment.policy": "trivial"},
    "random_erasing": {"augment.random_erasing": 0.25},
    "mixup": {"augment.mixup": 0.2},
    "cutmix": {"augment.cutmix": 1.0},
    "layer_decay": {"layer_decay": 0.7},
    "lr_find": {"lr_find": True},
}
CHAIN, DEFAULT = "chain", "default"
# rows of the chain before the pilot's winner retrained and head-only probes were candidates
# (renamed in the CSV by hand, kept for the comparison; this script no longer makes them)
CHAIN_CONTINUED = "chain_continued"
COLUMNS = ["dataset", "variant", "seed", "strategy", "status", "reason", "mode", "recipe",
           "train_images", "class_ratio", "test_images", "val_acc", "test_top1",
           "test_macro_f1", "test_balanced_accuracy", "pilot_seconds", "wall_s", "finished_at",
           "candidate", "start_from"]


# ---------------------------------------------------------------------------- data
def build_imbalanced_folder(root: Path, largest: int = IMBALANCE[0],
                            smallest: int = IMBALANCE[1]) -> Path:
    """An image folder from sklearn digits: class k keeps a geometric share from ``largest``
    (digit 0) down to ``smallest`` (digit 9) images. Rewritten only when absent."""
    if root.exists() and any(root.iterdir()):
        return root
    records = load_records("sklearn_digits")
    by_class: dict[str, list] = {}
    for record in records:
        by_class.setdefault(record.label_name, []).append(record)
    names = sorted(by_class)
    for k, name in enumerate(names):
        keep = round(largest * (smallest / largest) ** (k / (len(names) - 1)))
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, record in enumerate(by_class[name][:keep]):
            (folder / f"{i:04d}.png").write_bytes(record.image_bytes)
    return root


@cache
def context(dataset: str, size_px: int, folder: str) -> base.DatasetContext:
    """digits6 / lfw_small: study.py's small digits / LFW faces (10 per class -> 6/2/2);
    imbalanced: the folder through the project's ingestion."""
    if dataset in SMALL:
        return base.dataset_context(SMALL[dataset], "small", size_px)
    ingestion = base.project_params()["ingestion"]
    good, bad = validate_records(load_records("image_folder", folder), "error")
    table, class_names, profile = build_images_table(
        good, ingestion.get("splits"), int(ingestion.get("seed", 0)),
        min_per_class=int(ingestion.get("min_per_class", 2)), on_duplicate="skip",
        bad_images=bad)
    profile["source"] = "image_folder (digits, 10:1)"
    splits = split_image_data(table, size_px, None)
    similarity = base.project_params()["similarity"]
    sample = stratified_subset(splits["train"], similarity.get("max_images"),
                               int(similarity.get("seed", 0)))
    metrics, layers = similarity_report(base.backbone(size_px), sample, similarity)
    return base.DatasetContext(profile, class_names, splits, metrics, layers)


def schemas() -> tuple[StrategyParams, FinetuneParams]:
    params = base.project_params()
    return (StrategyParams.model_validate(params["strategy"]),
            FinetuneParams.model_validate(params["finetune"]))


def settings_for(seed: int) -> dict[str, Any]:
    return {**base.finetune_settings({}, seed), "regularizer": {}}


# ---------------------------------------------------------------------------- cells
def scores(model: torch.nn.Module, history, ctx: base.DatasetContext) -> dict[str, Any]:
    row = base.test_scores(model, history, ctx)
    test = ctx.splits["test"]
    cfg = model.backbone_cfg
    metrics = classification_metrics(predict(model, test.images, cfg.mean, cfg.std),
                                     test.labels.numpy(), ctx.class_names)
    return {**row, "test_balanced_accuracy": round(metrics["balanced_accuracy"], 4)}


def run_chain(ctx: base.DatasetContext, seed: int, size_px: int) -> dict[str, Any]:
    """The default chain: plan_finetuning (mode, recipe) -> pilot when planned -> fine-tuning."""
    strategy, finetune = schemas()
    plan = plan_finetuning(ctx.profile, ctx.metrics, ctx.layers, strategy, finetune)
    settings = settings_for(seed)
    torch.manual_seed(seed)
    pilot_seconds = 0.0
    if "candidate_plans" in plan:
        started = time.perf_counter()
        winner, model, trials, done = run_pilot(
            base.backbone(size_px), ctx.splits, plan["candidate_plans"], plan["recommended"],
            strategy.pilot.model_dump(), settings, seed)
        pilot_seconds = time.perf_counter() - started
        plan = plan_after_pilot(plan, winner, trials, done, plan["left_out"],
                                strategy.pilot.model_dump())
    if plan["start_from"] == "pretrained":  # matrix mode, or the pilot's winner retrains
        model = surgered(ctx, plan, seed)
    model, history = finetune_model(model, ctx.splits, plan,
                                    apply_recipe(settings, plan["recipe"]))
    return {"strategy": plan["strategy"], "mode": plan["mode"],
            "candidate": plan.get("candidate", plan["strategy"]),
            "start_from": plan["start_from"], "recipe": recipe_summary(plan["recipe"]),
            "pilot_seconds": round(pilot_seconds, 1), **scores(model, history, ctx)}


def surgered(ctx: base.DatasetContext, plan: dict[str, Any], seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)  # the new head's draw (see study.train_and_test)
    return apply_surgery(copy.deepcopy(base.backbone(ctx.metrics["input_size"])),
                         plan["num_classes"], plan["trainable_blocks"], plan["drop_last_blocks"],
                         plan["reinitialize"], seed)


def variant_settings(variant: str, plan: dict[str, Any], seed: int) -> dict[str, Any]:
    """finetune settings with every ingredient off but ``variant`` (default: the plan's)."""
    off = settings_for(seed)
    off["class_balance"] = "none"
    if variant == DEFAULT:
        return apply_recipe(off, plan["recipe"])
    settings = copy.deepcopy(off)
    for dotted, value in VARIANTS[variant].items():
        *parents, last = dotted.split(".")
        target = settings
        for key in parents:
            target = target[key]
        target[last] = value
    return settings


def run_variant(ctx: base.DatasetContext, variant: str, strategy_name: str, seed: int
                ) -> dict[str, Any]:
    """One recipe variant at ``strategy_name`` (the chain's pick), the plan's full budget."""
    strategy, finetune = schemas()
    plan = plan_finetuning(ctx.profile, ctx.metrics, ctx.layers,
                           strategy.model_copy(update={"override": strategy_name,
                                                       "mode": "matrix"}), finetune)
    if variant == "layer_decay" and strategy_name == "head_only":
        return {"strategy": strategy_name, "status": "skipped",
                "reason": "head_only trains no backbone block"}
    settings = variant_settings(variant, plan, seed)
    model, history = finetune_model(surgered(ctx, plan, seed), ctx.splits, plan, settings)
    recipe = recipe_summary(plan["recipe"]) if variant == DEFAULT else variant
    return {"strategy": strategy_name, "mode": "override", "recipe": recipe,
            **scores(model, history, ctx)}


# ---------------------------------------------------------------------------- driver
def done_rows(path: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    if not path.exists():
        return {}
    with path.open() as handle:
        return {(r["dataset"], r["variant"], r["seed"]): r for r in csv.DictReader(handle)}


def append(path: Path, row: dict[str, Any]) -> None:
    if path.exists():  # a CSV from before a column was added: rewrite it with the new header
        with path.open() as handle:
            reader = csv.DictReader(handle)
            old_rows, header = list(reader), reader.fieldnames
        if header != COLUMNS:
            with path.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, COLUMNS, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(old_rows)
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({c: row.get(c, "") for c in COLUMNS})


def write_baselines(path: Path, args: argparse.Namespace, folder: str) -> None:
    rows = []
    for dataset in args.datasets:
        ctx = context(dataset, args.size_px, folder)
        found = pixel_baselines(ctx.splits["train"], ctx.splits["test"], ctx.class_names,
                                base.project_params()["evaluation"])
        rows += [{"dataset": dataset, "baseline": name, "test_top1": round(r["top1"], 4),
                  "test_macro_f1": round(r["macro_f1"], 4)} for name, r in found.items()]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["dataset", "baseline", "test_top1", "test_macro_f1"])
        writer.writeheader()
        writer.writerows(rows)


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = str(build_imbalanced_folder(out.parent / "imbalanced_digits"))
    write_baselines(out.with_name(out.stem + "_baselines.csv"), args, folder)
    done = done_rows(out)
    for seed in args.seeds:
        for dataset in args.datasets:
            ctx = context(dataset, args.size_px, folder)
            counts = [s["train"] for s in ctx.profile["images_per_class_and_split"].values()]
            common = {"dataset": dataset, "seed": seed, "train_images": len(ctx.splits["train"]),
                      "test_images": len(ctx.splits["test"]),
                      "class_ratio": round(max(counts) / min(counts), 2)}
            chain = done.get((dataset, CHAIN, str(seed)))
            if chain is None:
                chain = run_cell(out, common, CHAIN, run_chain, ctx, seed, args.size_px)
            for variant in args.variants:
                if (dataset, variant, str(seed)) not in done:
                    run_cell(out, common, variant, run_variant, ctx, variant,
                             chain["strategy"], seed)


def run_cell(out: Path, common: dict[str, Any], variant: str, body, *args: Any
             ) -> dict[str, Any]:
    started = time.perf_counter()
    row = {**common, "variant": variant, "status": "done", **body(*args)}
    row.update(wall_s=round(time.perf_counter() - started, 1),
               finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
    append(out, row)
    logger.info("%s seed %s %s (%s): top-1 %s macro-F1 %s, %.0f s", row["dataset"], row["seed"],
                variant, row.get("strategy"), row.get("test_top1"), row.get("test_macro_f1"),
                row["wall_s"])
    return row


# ---------------------------------------------------------------------------- tables
def _mean_std(values) -> str:
    values = [100 * float(v) for v in values]
    if not values:
        return ""
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 \
        else 0.0
    return f"{mean:.1f} ± {std:.1f} ({len(values)})"


def tables(path: Path) -> str:
    """Markdown: per dataset, one row per variant (mean ± std over seeds, n), the change in
    macro-F1 against ``off`` on the same seeds, and the classical baselines."""
    rows = list(done_rows(path).values())
    baselines = path.with_name(path.stem + "_baselines.csv")
    base_rows = list(csv.DictReader(baselines.open())) if baselines.exists() else []
    lines = []
    for dataset in DATASETS:
        mine = [r for r in rows if r["dataset"] == dataset]
        if not mine:
            continue
        first = mine[0]
        lines += ["", f"### {dataset} ({first['train_images']} training images, "
                      f"{first['test_images']} test, largest/smallest class "
                      f"{first['class_ratio']})", "",
                  "| variant | strategy | test top-1 % | test macro-F1 % | balanced acc. % | "
                  "macro-F1 vs off (points, same seeds) | seconds |",
                  "|---|---|---|---|---|---|---|"]
        off = {r["seed"]: r for r in mine if r["variant"] == "off" and r["status"] == "done"}
        for variant in [CHAIN, CHAIN_CONTINUED, "off", DEFAULT, *list(VARIANTS)[1:]]:
            cells = [r for r in mine if r["variant"] == variant]
            done = [r for r in cells if r["status"] == "done"]
            if not cells:
                continue
            if not done:
                lines.append(f"| {variant} | {cells[0]['strategy']} | not run: "
                             f"{cells[0]['reason']} | | | | |")
                continue
            paired = [float(r["test_macro_f1"]) - float(off[r["seed"]]["test_macro_f1"])
                      for r in done if r["seed"] in off]
            delta = (f"{100 * sum(paired) / len(paired):+.1f} ({len(paired)})" if paired
                     else "")
            picks = [r.get("candidate") or r["strategy"] for r in done]
            strategies = ", ".join(f"{p} x{picks.count(p)}" if len(set(picks)) > 1 else p
                                   for p in sorted(set(picks)))
            seconds = sum(float(r["wall_s"]) for r in done) / len(done)
            lines.append(f"| {variant} | {strategies} | "
                         f"{_mean_std(r['test_top1'] for r in done)} | "
                         f"{_mean_std(r['test_macro_f1'] for r in done)} | "
                         f"{_mean_std(r['test_balanced_accuracy'] for r in done)} | {delta} | "
                         f"{seconds:.0f} |")
        for b in (b for b in base_rows if b["dataset"] == dataset):
            lines.append(f"| classical: {b['baseline']} | | {100 * float(b['test_top1']):.1f} | "
                         f"{100 * float(b['test_macro_f1']):.1f} | | | |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=["off", DEFAULT, *list(VARIANTS)[1:]],
                        choices=[DEFAULT, *VARIANTS])
    parser.add_argument("--size-px", type=int, default=96, help="input resolution (px)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", default=str(base.ROOT / "benchmarks" / "results" /
                                             "study_recipe.csv"))
    parser.add_argument("--tables", action="store_true",
                        help="print the Markdown tables of --out, train nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("ft_pipelines").setLevel(logging.WARNING)
    if args.tables:
        logger.info("tables of %s:\n%s", args.out, tables(Path(args.out)))
        return
    torch.set_num_threads(args.threads)
    run(args)


if __name__ == "__main__":
    main()

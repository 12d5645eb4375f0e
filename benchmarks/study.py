"""Benchmark study of the playbook: strategy x regulariser x dataset x size x seed.

Every cell runs the same core functions the Kedro nodes chain (ingest -> similarity -> plan ->
surgery -> [DELTA attention] -> fine-tune -> test), with the project's parameters from
``conf/base`` and only the grid's own choices overridden. ``--regularizers plan`` runs each
strategy with its plan's regulariser (the grid the pipeline itself can choose from); a
``pilot`` cell per (dataset, size, seed) runs ``strategy.mode: pilot`` exactly (trials, then the
winner continues). Rows are appended to a CSV one by one; a restarted run skips the cells
already there. Each row is also an MLflow run (one experiment per
study, in the project's store unless --tracking-uri / MLFLOW_TRACKING_URI say otherwise), with the
per-epoch curves. See ``benchmarks/study.md``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import itertools
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

# DELTA's attention hard-wires a tqdm bar; keep it out of the log of a long background run.
os.environ.setdefault("TQDM_DISABLE", "1")

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from kedro.config import OmegaConfigLoader  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from torch import nn  # noqa: E402

from ft_pipelines.core.data import (  # noqa: E402
    ImageData,
    build_images_table,
    load_records,
    split_image_data,
    stratified_subset,
    validate_records,
)
from ft_pipelines.core.evaluation import (  # noqa: E402
    classification_metrics,
    pixel_baselines,
    predict,
)
from ft_pipelines.core.models import apply_surgery, load_backbone  # noqa: E402
from ft_pipelines.core.regularizers import delta_attention  # noqa: E402
from ft_pipelines.core.similarity import similarity_report  # noqa: E402
from ft_pipelines.core.strategy import (  # noqa: E402
    candidate_plans,
    pilot_candidates,
    plan_after_pilot,
    run_pilot,
    select_strategy,
)
from ft_pipelines.core.training import finetune_model  # noqa: E402
from ft_pipelines.tracking import records  # noqa: E402

logger = logging.getLogger("study")
ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf" / "base"

# ---------------------------------------------------------------------------- the grid
DATASETS = ("sklearn_digits", "lfw_faces")
SIZES = {"small": 10, "full": None}  # images per class (None: everything)
# 10 images per class: 6/2/2 keeps >= 1 val and >= 1 test image per class. Full size keeps the
# project's own splits (conf/base/parameters_data_ingestion.yml).
SMALL_SPLITS = {"train": 0.6, "val": 0.2, "test": 0.2}
STRATEGIES = ("head_only", "partial_finetune", "full_finetune", "from_scratch")
REGULARIZERS: dict[str, dict[str, Any]] = {
    "none": {"name": "none"},
    "l2": {"name": "l2", "beta": 0.0005},
    "l2_sp": {"name": "l2_sp", "alpha": 0.01, "beta": 0.01},
    "delta": {"name": "delta", "alpha": 0.01, "beta": 0.01},
}
AUTO = "auto"  # the extra cell per (dataset, size, seed): exactly the plan that auto makes
PILOT = "pilot"  # strategy.mode=pilot: trials, then the winner continues to its full budget
PLAN = "plan"  # --regularizers plan: each strategy with its plan's regulariser
COLUMNS = [
    "kind", "dataset", "size", "strategy", "regularizer", "seed", "size_px", "epochs",
    "status", "reason", "regularizer_params", "trainable_blocks", "train_images",
    "val_images", "test_images", "selected_epoch", "val_acc", "val_loss", "test_top1",
    "test_macro_f1", "wall_s", "threads", "finished_at", "steps", "recommended",
    "pilot_seconds", "pilot_steps", "pilot_trials",
]
KEY = ("kind", "dataset", "size", "strategy", "regularizer", "seed", "size_px", "epochs")
RESULTS = ("selected_epoch", "val_acc", "val_loss", "test_top1", "test_macro_f1", "wall_s")


def skip_reason(strategy: str, regularizer: str) -> str | None:
    """Why a (strategy, regulariser) pair is not run: identical or meaningless by construction."""
    if strategy == "from_scratch" and regularizer in ("l2_sp", "delta"):
        return (f"{regularizer} anchors to the starting point, which from_scratch re-initialises:"
                " a pull toward random weights/features, not toward pretrained knowledge")
    if strategy == "head_only" and regularizer == "delta":
        return ("every block is frozen, so DELTA's feature-map term is 0 and only its "
                "beta/2*||new weights||^2 term is left: L2 on the head, which head_only + l2 "
                "already covers")
    return None


@dataclass(frozen=True)
class Cell:
    kind: str  # grid | auto
    dataset: str
    size: str
    strategy: str
    regularizer: str
    seed: int


def grid_cells(datasets: list[str], sizes: list[str], seeds: list[int],
               regularizers: list[str], pilot: bool = True) -> Iterator[Cell]:
    """Seed by seed (a stopped run still has whole grids); in each: the auto cell (only with
    fixed regularisers: with ``plan`` it is the grid cell of the recommended strategy), the
    pilot cell, then the grid."""
    for seed, size, dataset in itertools.product(seeds, sizes, datasets):
        if regularizers != [PLAN]:
            yield Cell(AUTO, dataset, size, AUTO, PLAN, seed)
        if pilot:
            yield Cell(PILOT, dataset, size, PILOT, PLAN, seed)
        for strategy, reg in itertools.product(STRATEGIES, regularizers):
            yield Cell("grid", dataset, size, strategy, reg, seed)


# ---------------------------------------------------------------------------- project params
@cache
def project_params() -> dict[str, Any]:
    """conf/base's parameters as a run reads them (Kedro's loader: ``${globals:...}`` such as
    the timing protocol resolved), as plain dicts."""
    loader = OmegaConfigLoader(str(CONF.parent), base_env="base", default_run_env="base")
    return copy.deepcopy(dict(loader["parameters"]))


def resolve_epochs(strategy: str, plan_epochs: int, spec: dict[str, int], scale: float) -> int:
    """Explicit per-strategy > explicit for all > the plan's epochs times ``scale`` (>= 1)."""
    if strategy in spec:
        return spec[strategy]
    if "*" in spec:
        return spec["*"]
    return max(1, round(plan_epochs * scale))


def parse_epochs(items: list[str] | None) -> dict[str, int]:
    """``["4"]`` -> all strategies 4; ``["full_finetune=4", "from_scratch=6"]`` per strategy."""
    spec: dict[str, int] = {}
    for item in items or []:
        name, _, value = item.rpartition("=")
        if name and name not in STRATEGIES:
            raise ValueError(f"--epochs {item!r}: unknown strategy {name!r}; use {STRATEGIES}")
        spec[name or "*"] = int(value)
    return spec


# ---------------------------------------------------------------------------- data (cached)
@dataclass
class DatasetContext:
    """One (dataset, size): the images table, decoded splits, similarity and the auto plan."""

    profile: dict
    class_names: list[str]
    splits: dict[str, ImageData]
    metrics: dict
    layers: pd.DataFrame


@cache
def backbone(size_px: int) -> nn.Module:
    """The pretrained network (bundled EfficientNet-Lite0), loaded once; cells deep-copy it."""
    spec = project_params()["backbone"]
    return load_backbone(spec.get("source", "bundled"), spec.get("architecture"),
                           spec.get("weights"), spec.get("path"), size_px,
                           spec.get("library", "auto"))


FULL_CAP: dict[str, int | None] = {}  # --full-cap DATASET=N: images per class at size "full"


@cache
def dataset_context(dataset: str, size: str, size_px: int) -> DatasetContext:
    """Ingest like the data_ingestion node, then similarity once per (dataset, size)."""
    ingestion = project_params()["ingestion"]
    good, bad = validate_records(load_records(dataset), ingestion.get("on_bad_image", "error"))
    cap = SIZES[size] if size == "small" else FULL_CAP.get(dataset)
    table, class_names, profile = build_images_table(
        good, SMALL_SPLITS if size == "small" else ingestion.get("splits"),
        int(ingestion.get("seed", 0)), max_per_class=cap,
        min_per_class=int(ingestion.get("min_per_class", 2)),
        on_duplicate=ingestion.get("on_duplicate", "error"), bad_images=bad)
    profile["source"] = dataset
    splits = split_image_data(table, size_px, None)
    similarity = project_params()["similarity"]
    sample = stratified_subset(splits["train"], similarity.get("max_images"),
                               int(similarity.get("seed", 0)))
    metrics, layers = similarity_report(backbone(size_px), sample, similarity)
    return DatasetContext(profile, class_names, splits, metrics, layers)


def batch_size() -> int:
    return int(project_params()["finetune"]["batch_size"])


def make_plan(ctx: DatasetContext, override: str) -> dict[str, Any]:
    strategy = {**project_params()["strategy"], "override": override}
    return select_strategy(ctx.profile, ctx.metrics, ctx.layers, ctx.metrics["blocks"], strategy,
                           batch_size=batch_size())


def auto_pick(ctx: DatasetContext, dataset: str, size: str, size_px: int) -> dict[str, Any]:
    """What ``strategy.override: auto`` chooses, with the numbers behind it."""
    plan = make_plan(ctx, AUTO)
    return {"dataset": dataset, "size": size, "size_px": size_px, "picked": plan["strategy"],
            "size_class": plan["size"]["class"], "train_images": plan["size"]["train_images"],
            "similarity_class": plan["similarity"]["class"],
            "bn_divergence": round(plan["similarity"]["value"], 4),
            "threshold": plan["similarity"]["threshold"],
            "logme": round(float(ctx.metrics["logme"]), 4),
            "trainable_blocks": plan["trainable_blocks"],
            "plan_regularizer": json.dumps(plan["regularizer"], sort_keys=True),
            "plan_epochs": plan["epochs"], "plan_steps": plan["budget"]["steps"]}


# ---------------------------------------------------------------------------- one cell
def scratch_left_out(ctx: DatasetContext) -> str | None:
    """The pilot's own rule: from_scratch is not tried on too few images per class."""
    plan = make_plan(ctx, AUTO)
    _, skipped = pilot_candidates(plan, {**project_params()["strategy"]["pilot"],
                                         "candidates": "auto"})
    return skipped[0] if skipped else None


def run_cell(cell: Cell, size_px: int, epochs_spec: dict[str, int], scale: float
             ) -> dict[str, Any]:
    """Train and test one cell; returns its CSV row (a skipped row when skip_reason says so)."""
    ctx = dataset_context(cell.dataset, cell.size, size_px)
    if cell.kind == PILOT:
        return run_pilot_cell(ctx, cell, size_px)
    plan = make_plan(ctx, AUTO if cell.kind == AUTO else cell.strategy)
    strategy = plan["strategy"]
    plan["epochs"] = resolve_epochs(strategy, plan["epochs"], epochs_spec, scale)
    row = {"kind": cell.kind, "dataset": cell.dataset, "size": cell.size,
           "strategy": strategy if cell.kind == AUTO else cell.strategy,
           "regularizer": cell.regularizer, "seed": cell.seed, "size_px": size_px,
           "epochs": plan["epochs"], "trainable_blocks": plan["trainable_blocks"],
           "threads": torch.get_num_threads(),
           **{f"{s}_images": len(ctx.splits[s]) for s in ("train", "val", "test")}}
    row["steps"] = plan["epochs"] * plan["budget"]["steps_per_epoch"]
    reason = None if cell.kind == AUTO else skip_reason(cell.strategy, cell.regularizer)
    if cell.kind == "grid" and cell.strategy == "from_scratch" and OPTIONS["scratch_as_pilot"]:
        reason = reason or scratch_left_out(ctx)
    if reason:
        return {**row, "status": "skipped", "reason": reason}
    by_plan = cell.kind == AUTO or cell.regularizer == PLAN
    regularizer = (dict(plan["regularizer"]) if by_plan
                   else dict(REGULARIZERS[cell.regularizer]))
    if by_plan:
        row["regularizer"] = f"plan:{regularizer['name']}"
    started = time.perf_counter()
    result = train_and_test(ctx, plan, regularizer, cell.seed)
    return {**row, **result, "status": "done", "reason": "",
            "regularizer_params": json.dumps(regularizer, sort_keys=True),
            "wall_s": round(time.perf_counter() - started, 1)}


OPTIONS = {"scratch_as_pilot": True}  # --scratch-everywhere turns it off


def finetune_settings(regularizer: dict[str, Any], seed: int) -> dict[str, Any]:
    return {**project_params()["finetune"], "regularizer": regularizer, "seed": seed,
            "progress": False, "resume": False}  # no checkpoint_dir passed: none written


def run_pilot_cell(ctx: DatasetContext, cell: Cell, size_px: int) -> dict[str, Any]:
    """strategy.mode=pilot as the strategy_selection and finetune nodes run it."""
    started = time.perf_counter()
    recommendation = make_plan(ctx, AUTO)
    strategy_params = {**project_params()["strategy"], "override": AUTO}
    candidates, skipped = pilot_candidates(recommendation, strategy_params["pilot"])
    plans = candidate_plans(ctx.profile, ctx.metrics, ctx.layers, ctx.metrics["blocks"],
                            strategy_params, candidates, batch_size=batch_size())
    recommendation["candidate_plans"] = plans
    torch.manual_seed(cell.seed)
    params = finetune_settings({}, cell.seed)
    winner, model, trials, epochs_done = run_pilot(
        backbone(size_px), ctx.splits, plans, recommendation["recommended"],
        strategy_params["pilot"], params, cell.seed)
    pilot_seconds = time.perf_counter() - started
    plan = plan_after_pilot(recommendation, winner, trials, epochs_done, skipped,
                            strategy_params["pilot"])
    if plan["start_from"] == "pretrained":  # the winner retrains (strategy.pilot.restart_*)
        torch.manual_seed(cell.seed)
        model = apply_surgery(copy.deepcopy(backbone(size_px)), plan["num_classes"],
                              plan["trainable_blocks"], plan["drop_last_blocks"],
                              plan["reinitialize"], cell.seed)
    model, history = finetune_model(model, ctx.splits, plan, params)
    per_epoch = plan["budget"]["steps_per_epoch"]
    return {"kind": PILOT, "dataset": cell.dataset, "size": cell.size, "strategy": winner,
            "regularizer": PLAN, "seed": cell.seed, "size_px": size_px, "epochs": 0,
            "trainable_blocks": plan["trainable_blocks"], "threads": torch.get_num_threads(),
            **{f"{s}_images": len(ctx.splits[s]) for s in ("train", "val", "test")},
            **test_scores(model, history, ctx), "status": "done", "reason": "",
            "regularizer_params": json.dumps(plan["regularizer"], sort_keys=True),
            "steps": (epochs_done + plan["epochs"]) * per_epoch,
            "recommended": recommendation["recommended"],
            "pilot_seconds": round(pilot_seconds, 1),
            "pilot_steps": plan["pilot"]["steps_run"],
            "pilot_trials": json.dumps([[t["round"], t["strategy"], t["total_steps"],
                                         round(t["val_top1"], 4)] for t in trials]),
            "wall_s": round(time.perf_counter() - started, 1)}


def test_scores(model: nn.Module, history: pd.DataFrame, ctx: DatasetContext) -> dict[str, Any]:
    """Validation of the selected epoch and test top-1 / macro-F1 of the returned model."""
    # BestModel keeps the epoch with the best val accuracy, ties broken by lower val loss
    best = history.assign(neg_loss=-history["val_loss"]).sort_values(
        ["val_acc", "neg_loss"], kind="stable").iloc[-1]
    cfg = model.backbone_cfg
    test = ctx.splits["test"]
    probs = predict(model, test.images, cfg.mean, cfg.std)
    scores = classification_metrics(probs, test.labels.numpy(), ctx.class_names)
    return {"selected_epoch": int(best.name) + 1, "val_acc": round(float(best["val_acc"]), 4),
            "val_loss": round(float(best["val_loss"]), 4),
            "test_top1": round(scores["top1"], 4), "test_macro_f1": round(scores["macro_f1"], 4)}


def train_and_test(ctx: DatasetContext, plan: dict[str, Any], regularizer: dict[str, Any],
                   seed: int) -> dict[str, Any]:
    """Surgery, DELTA attention (when DELTA), fine-tuning, test top-1 of the selected epoch."""
    surgery_seed = seed  # from_scratch: each seed is its own random initialisation
    # replace_head draws the new head from torch's global RNG (surgery.seed only seeds re-init):
    # seed it, or a cell's head depends on the cells that ran before it in this process.
    torch.manual_seed(seed)
    model = apply_surgery(copy.deepcopy(backbone(ctx.metrics["input_size"])),
                          plan["num_classes"], plan["trainable_blocks"],
                          plan["drop_last_blocks"], plan["reinitialize"], surgery_seed)
    params = finetune_settings(regularizer, seed)
    attention = None
    if regularizer["name"] == "delta":
        probe = stratified_subset(ctx.splits["train"], params.get("delta_probe_images"), seed)
        attention = delta_attention(model, probe, seed)
    model, history = finetune_model(model, ctx.splits, plan, params, attention, None)
    return {**test_scores(model, history, ctx), "history": history}  # history: MLflow only


# ---------------------------------------------------------------------------- CSV + driver
def finished_keys(path: Path) -> set[tuple[str, ...]]:
    if not path.exists():
        return set()
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    return {tuple(r) for r in table[list(KEY)].itertuples(index=False)}


def append_row(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS, extrasaction="raise")
        if new:
            writer.writeheader()
        writer.writerow({c: row.get(c, "") for c in COLUMNS})


def cell_key(cell: Cell, size_px: int, epochs: int) -> tuple[str, ...]:
    return (cell.kind, cell.dataset, cell.size, cell.strategy, cell.regularizer,
            str(cell.seed), str(size_px), str(epochs))


def planned_epochs(cell: Cell, size_px: int, spec: dict[str, int], scale: float) -> int:
    ctx = dataset_context(cell.dataset, cell.size, size_px)
    if cell.kind == PILOT:
        return 0  # decided by the trials
    plan = make_plan(ctx, AUTO if cell.kind == AUTO else cell.strategy)
    return resolve_epochs(plan["strategy"], plan["epochs"], spec, scale)


def write_auto_picks(path: Path, args: argparse.Namespace) -> None:
    """One row per (dataset, size): the strategy auto picks (rewritten on every start)."""
    picks = [auto_pick(dataset_context(d, s, args.size_px), d, s, args.size_px)
             for s, d in itertools.product(args.sizes, args.datasets)]
    pd.DataFrame(picks).to_csv(path, index=False)
    for pick in picks:
        logger.info("auto picks %s for %s/%s (BN divergence %.3f, %s, %s)", pick["picked"],
                    pick["dataset"], pick["size"], pick["bn_divergence"],
                    pick["similarity_class"], pick["size_class"])


def write_baselines(path: Path, args: argparse.Namespace) -> None:
    """The classical baseline per (dataset, size): logistic regression and an RBF SVC on grey
    16x16 pixels, on the same splits (they do not depend on the training seed)."""
    settings = project_params()["evaluation"]
    rows = []
    for size, dataset in itertools.product(args.sizes, args.datasets):
        ctx = dataset_context(dataset, size, args.size_px)
        scores = pixel_baselines(ctx.splits["train"], ctx.splits["test"], ctx.class_names,
                                 settings)
        rows += [{"dataset": dataset, "size": size, "baseline": name,
                  "test_top1": row["top1"], "test_macro_f1": row["macro_f1"],
                  "latency_ms": row.get("latency_ms")} for name, row in scores.items()]
    pd.DataFrame(rows).to_csv(path, index=False)


# ---------------------------------------------------------------------------- MLflow
@dataclass
class StudyTracker:
    """One MLflow run per CSV row; a failing store is one warning, the study goes on."""

    client: MlflowClient | None
    experiment_id: str = ""

    @classmethod
    def open(cls, uri: str | None, experiment: str) -> StudyTracker:
        if not uri:
            return cls(None)
        try:
            client = MlflowClient(uri)
            found = client.get_experiment_by_name(experiment)
            local = uri.startswith("sqlite:")  # artifacts next to the store, in the project
            experiment_id = found.experiment_id if found else client.create_experiment(
                experiment, artifact_location=(ROOT / "mlruns").as_uri() if local else None)
        except Exception as error:
            logger.warning("MLflow store %s unusable, the study is not tracked: %s", uri, error)
            return cls(None)
        logger.info("MLflow: experiment %r in %s", experiment, uri)
        return cls(client, experiment_id)

    def log(self, row: dict[str, Any], history: pd.DataFrame | None) -> None:
        """Results as metrics, every other column as a parameter, curves per epoch."""
        if self.client is None:
            return
        try:
            run = self.client.create_run(self.experiment_id, run_name=" ".join(
                str(row[k]) for k in ("dataset", "size", "strategy", "regularizer", "seed")))
            now = int(time.time() * 1000)
            metrics = [Metric(k, float(row[k]), now, 0) for k in RESULTS
                       if records.is_number(row.get(k))]
            if history is not None:
                metrics += [Metric(k, v, now, step)
                            for k, v, step in records.curve_metrics(history, "training")]
            params = records.as_params({c: row.get(c, "") for c in COLUMNS if c not in RESULTS})
            self.client.log_batch(run.info.run_id, metrics=metrics,
                                  params=[Param(k, v) for k, v in params.items()],
                                  tags=[RunTag("status", str(row["status"]))])
            self.client.set_terminated(run.info.run_id)
        except Exception as error:
            logger.warning("MLflow logging failed, the rest of the study is not tracked: %s",
                           error)
            self.client = None


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else the project's own store (conf/base/mlflow.yml's default)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{ROOT / 'mlflow.db'}"


def parse_caps(items: list[str] | None) -> dict[str, int]:
    """``["sklearn_digits=60"]`` -> at most 60 images per class at size full."""
    caps = {}
    for item in items or []:
        name, _, value = item.partition("=")
        if name not in DATASETS:
            raise ValueError(f"--full-cap {item!r}: unknown data set; use {DATASETS}")
        caps[name] = int(value)
    return caps


def run_study(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    spec = parse_epochs(args.epochs)
    FULL_CAP.update(parse_caps(args.full_cap))
    write_auto_picks(out.with_name(out.stem + "_auto.csv"), args)
    write_baselines(out.with_name(out.stem + "_baselines.csv"), args)
    if args.baselines_only:
        return
    done = finished_keys(out)
    experiment = args.experiment or (out.stem if out.stem.startswith("study")
                                     else f"study-{out.stem}")
    tracker = StudyTracker.open(args.tracking_uri, experiment)
    FULL_CAP.update(parse_caps(args.full_cap))
    OPTIONS["scratch_as_pilot"] = not args.scratch_everywhere
    cells = list(grid_cells(args.datasets, args.sizes, args.seeds, args.regularizers,
                            not args.no_pilot))
    started = time.perf_counter()
    for index, cell in enumerate(cells, 1):
        # the epoch overrides apply to --epochs-sizes only; other sizes keep conf/base's epochs
        cell_spec, scale = ((spec, args.epochs_scale) if cell.size in args.epochs_sizes
                            else ({}, 1.0))
        epochs = planned_epochs(cell, args.size_px, cell_spec, scale)
        key = cell_key(cell, args.size_px, epochs)
        if key in done:
            continue
        row = run_cell(cell, args.size_px, cell_spec, scale)
        history = row.pop("history", None)
        row["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        append_row(out, row)
        done.add(key)
        tracker.log(row, history)
        logger.info("[%d/%d] %s %s/%s %s+%s seed %d: %s %s (%.0f s elapsed)", index, len(cells),
                    cell.kind, cell.dataset, cell.size, row["strategy"], row["regularizer"],
                    cell.seed, row["status"], row.get("test_top1", ""),
                    time.perf_counter() - started)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--size-px", type=int, default=96, help="input resolution (px)")
    parser.add_argument("--regularizers", nargs="+", default=[PLAN],
                        choices=[PLAN, *REGULARIZERS],
                        help="plan: each strategy with its plan's regulariser (default)")
    parser.add_argument("--no-pilot", action="store_true", help="no strategy.mode=pilot cell")
    parser.add_argument("--full-cap", nargs="+", metavar="DATASET=N",
                        help="at most N images per class at size full (a cheaper 'full')")
    parser.add_argument("--scratch-everywhere", action="store_true",
                        help="also run from_scratch where the pilot leaves it out")
    parser.add_argument("--epochs", nargs="+", metavar="[STRATEGY=]N",
                        help="override the plan's epochs: N for all, or STRATEGY=N")
    parser.add_argument("--epochs-scale", type=float, default=1.0,
                        help="multiply the plan's epochs (for strategies without --epochs)")
    parser.add_argument("--epochs-sizes", nargs="+", default=list(SIZES), choices=list(SIZES),
                        help="sizes --epochs/--epochs-scale apply to (default: all)")
    parser.add_argument("--baselines-only", action="store_true",
                        help="write the auto picks and the classical baselines, train nothing")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "study.csv"))
    parser.add_argument("--verbose", action="store_true", help="log the core's per-epoch lines")
    parser.add_argument("--tracking-uri", default=default_tracking_uri(),
                        help="MLflow store ('' for none; default: MLFLOW_TRACKING_URI, else "
                             "the project's mlflow.db)")
    parser.add_argument("--experiment",
                        help="MLflow experiment (default: the CSV's name, e.g. study)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("ft_pipelines").setLevel(logging.INFO if args.verbose else logging.WARNING)
    torch.set_num_threads(args.threads)
    run_study(args)


if __name__ == "__main__":
    main()

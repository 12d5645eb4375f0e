"""Markdown tables from the study's CSV (``benchmarks/study.py``): test top-1 per strategy and
regulariser, the strategy ``auto`` picks against the best cell, and the time it all took.
A study run with ``--regularizers plan`` gets one row per strategy plus ``auto (matrix)`` and
``auto (pilot)`` (``plan_tables``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

logger = logging.getLogger("study_report")
ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ["head_only", "partial_finetune", "full_finetune", "from_scratch"]
REGULARIZERS = ["none", "l2", "l2_sp", "delta"]
CELL = ["kind", "dataset", "size", "strategy", "regularizer", "seed"]
TOLERANCE_POINTS = 1.0


def load_rows(path: Path, size_px: int | None) -> pd.DataFrame:
    """The study's rows for one input resolution; a re-run cell keeps its latest row."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run benchmarks/study.py first.")
    rows = pd.read_csv(path)
    if size_px is not None:
        rows = rows[rows["size_px"] == size_px]
    resolutions = sorted(rows["size_px"].unique())
    if len(resolutions) != 1:
        raise ValueError(f"{path} holds runs at {resolutions} px (or none): pass --size-px.")
    repeated = rows.duplicated(CELL, keep="last")
    if repeated.any():
        logger.warning("%d cells were run more than once (other epochs): keeping the latest",
                       int(repeated.sum()))
    return rows[~repeated]


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean/std/n over seeds of test top-1 and val accuracy (in %) for every done cell."""
    done = rows[rows["status"] == "done"].assign(test=lambda t: 100 * t["test_top1"],
                                                 val=lambda t: 100 * t["val_acc"])
    keys = ["kind", "dataset", "size", "strategy", "regularizer"]
    return done.groupby(keys).agg(test_mean=("test", "mean"), test_std=("test", "std"),
                                  n=("test", "size"), val_mean=("val", "mean"),
                                  val_loss=("val_loss", "mean"), epochs=("epochs", "first"),
                                  wall_s=("wall_s", "sum")).reset_index()


def fmt(mean: float, std: float, n: int) -> str:
    spread = "–" if pd.isna(std) else f"{std:.1f}"
    return f"{mean:.1f} ± {spread} ({n})"


def fmt_row(row: pd.Series) -> str:
    return fmt(row["test_mean"], row["test_std"], int(row["n"]))


def grid_table(summary: pd.DataFrame, rows: pd.DataFrame, dataset: str, size: str) -> str:
    """Rows strategy, columns regulariser; skipped cells say so."""
    mine = summary[(summary["kind"] == "grid") & (summary["dataset"] == dataset)
                   & (summary["size"] == size)].set_index(["strategy", "regularizer"])
    skipped = set(map(tuple, rows.loc[(rows["status"] == "skipped") & (rows["dataset"] == dataset)
                                      & (rows["size"] == size),
                                      ["strategy", "regularizer"]].to_numpy()))
    lines = ["| strategy (epochs) | " + " | ".join(REGULARIZERS) + " |",
             "|---|" + "---|" * len(REGULARIZERS)]
    for strategy in STRATEGIES:
        cells, epochs = [], ""
        for reg in REGULARIZERS:
            if (strategy, reg) in mine.index:
                found = mine.loc[(strategy, reg)]
                cells.append(fmt(found["test_mean"], found["test_std"], int(found["n"])))
                epochs = f" ({int(found['epochs'])})"
            else:
                cells.append("skipped" if (strategy, reg) in skipped else "not run")
        lines.append(f"| {strategy}{epochs} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def auto_verdict(summary: pd.DataFrame, picks: pd.DataFrame, dataset: str, size: str) -> str:
    """The auto run (its plan exactly) against the best grid cell, by test and by validation."""
    grid = summary[(summary["kind"] == "grid") & (summary["dataset"] == dataset)
                   & (summary["size"] == size)]
    auto = summary[(summary["kind"] == "auto") & (summary["dataset"] == dataset)
                   & (summary["size"] == size)]
    if grid.empty or auto.empty:
        return "auto vs grid: not enough finished cells yet."
    auto_row = auto.iloc[0]
    best = grid.loc[grid["test_mean"].idxmax()]
    by_val = grid.sort_values(["val_mean", "val_loss"], ascending=[False, True]).iloc[0]
    gap = best["test_mean"] - auto_row["test_mean"]
    within = "yes" if gap <= TOLERANCE_POINTS else "no"
    pick = picks[(picks["dataset"] == dataset) & (picks["size"] == size)]
    why = "" if pick.empty else (f" (BN divergence {pick.iloc[0]['bn_divergence']:.2f} vs "
                                 f"threshold {pick.iloc[0]['threshold']}: "
                                 f"{pick.iloc[0]['similarity_class']}, "
                                 f"{pick.iloc[0]['size_class']})")
    return "\n".join([
        f"- auto picks **{auto_row['strategy']}** with its plan's regulariser "
        f"({auto_row['regularizer']}){why}: test {fmt_row(auto_row)}",
        f"- best grid cell by test: {best['strategy']} + {best['regularizer']}: "
        f"{fmt_row(best)}",
        f"- best grid cell by validation: {by_val['strategy']} + {by_val['regularizer']}: "
        f"val {by_val['val_mean']:.1f}, test {fmt_row(by_val)}",
        f"- **auto within {TOLERANCE_POINTS:g} point of the best cell: {within}** "
        f"(gap {gap:+.1f} points)",
    ])


def within_goal(gap: float, test_images: int) -> bool:
    """Issue 14's goal: within max(1 point, one test image) of the best cell."""
    return gap <= max(TOLERANCE_POINTS, 100 / test_images) + 1e-9


def plan_table(rows: pd.DataFrame, picks: pd.DataFrame, dataset: str, size: str,
               baselines: pd.DataFrame | None = None) -> str:
    """One row per strategy (its plan's regulariser), auto (matrix), auto (pilot), the classical
    baselines, the verdict."""
    mine = rows[(rows["dataset"] == dataset) & (rows["size"] == size)]
    done = mine[mine["status"] == "done"]
    grid = done[done["kind"] == "grid"]
    pilot = done[done["kind"] == "pilot"]
    test_images = int(done["test_images"].iloc[0])
    lines = ["| row | test top-1 % | val top-1 % | steps | seconds | seeds |",
             "|---|---|---|---|---|---|"]
    means = {}
    for strategy in STRATEGIES:
        cells = grid[grid["strategy"] == strategy]
        if cells.empty:
            why = mine.loc[mine["strategy"] == strategy, "reason"].dropna()
            state = f"not run: {why.iloc[0]}" if len(why) else "not finished"
            lines.append(f"| {strategy} | {state} | | | | |")
            continue
        means[strategy] = 100 * cells["test_top1"].mean()
        lines.append(row_line(strategy, cells))
    pick = picks[(picks["dataset"] == dataset) & (picks["size"] == size)]
    recommended = pick.iloc[0]["picked"] if len(pick) else None
    matrix = grid[grid["strategy"] == recommended]
    if len(matrix):
        lines.append(row_line(f"**auto (matrix)** = {recommended}", matrix))
    if len(pilot):
        winners = ", ".join(f"{w} x{n}" for w, n in pilot["strategy"].value_counts().items())
        lines.append(row_line(f"**auto (pilot)** -> {winners}", pilot))
    if baselines is not None:
        here = baselines[(baselines["dataset"] == dataset) & (baselines["size"] == size)]
        for row in here.itertuples():
            lines.append(f"| classical: {row.baseline} (grey 16x16 pixels) | "
                         f"{100 * row.test_top1:.1f} (deterministic) | | | | |")
    if not means:
        return "\n".join(lines)
    best = max(means, key=means.get)
    parts = ["\n".join(lines), ""]
    seeds_grid = set(grid["seed"])
    for name, cells in (("auto (matrix)", matrix), ("auto (pilot)", pilot)):
        if cells.empty:
            continue
        # compare on the seeds both have, so a missing seed does not move the mean
        common = seeds_grid & set(cells["seed"])
        best_on = 100 * grid[(grid["strategy"] == best) & grid["seed"].isin(common)][
            "test_top1"].mean()
        gap = best_on - 100 * cells[cells["seed"].isin(common)]["test_top1"].mean()
        verdict = "yes" if within_goal(gap, test_images) else "no"
        parts.append(f"- {name}: gap to the best finished cell ({best}) {gap:+.1f} points over "
                     f"seeds {sorted(common)}; within max(1 point, one test image = "
                     f"{100 / test_images:.1f}): **{verdict}**")
    if len(pilot) and len(matrix):
        extra = pilot["pilot_seconds"].mean()
        parts.append(f"- the pilot's trials cost {extra:.0f} s per run on average "
                     f"({pilot['pilot_steps'].mean():.0f} optimiser steps over the candidates); "
                     f"a pilot run took {pilot['wall_s'].mean():.0f} s in all against "
                     f"{matrix['wall_s'].mean():.0f} s for the matrix's plan")
        trials = "; ".join(f"seed {int(r.seed)}: {r.pilot_trials}" for r in pilot.itertuples())
        parts.append(f"- pilot trials [round, strategy, steps, val top-1]: {trials}")
    return "\n".join(parts)


def row_line(name: str, cells: pd.DataFrame) -> str:
    test = 100 * cells["test_top1"]
    return (f"| {name} | {fmt(test.mean(), test.std(), len(test))} | "
            f"{100 * cells['val_acc'].mean():.1f} | {cells['steps'].mean():.0f} | "
            f"{cells['wall_s'].mean():.0f} | {sorted(cells['seed'].astype(int))} |")


def render_plan(rows: pd.DataFrame, picks: pd.DataFrame,
                baselines: pd.DataFrame | None = None) -> str:
    done = rows[rows["status"] == "done"]
    parts = ["<!-- generated by benchmarks/study_report.py from the study CSV; do not edit -->",
             "", f"Test top-1 in %, mean ± std over seeds (n); input "
             f"{int(rows['size_px'].iloc[0])} px; {int(done['threads'].max())} CPU thread(s); "
             "each strategy with its plan's regulariser and budget (max(epochs x steps, "
             "min_steps)); `steps` = optimiser steps trained, `seconds` = wall clock per run "
             "on a busy machine."]
    for (dataset, size), group in rows.groupby(["dataset", "size"], sort=False):
        split = group.iloc[0]
        parts += ["", f"### {dataset}, {size} ({int(split['train_images'])} train / "
                      f"{int(split['val_images'])} val / {int(split['test_images'])} test images)",
                  "", plan_table(rows, picks, dataset, size, baselines)]
    return "\n".join(parts) + "\n"


def render(rows: pd.DataFrame, picks: pd.DataFrame,
           baselines: pd.DataFrame | None = None) -> str:
    if rows["regularizer"].astype(str).str.startswith("plan").all():
        return render_plan(rows, picks, baselines)
    summary = summarise(rows)
    done = rows[rows["status"] == "done"]
    parts = ["<!-- generated by benchmarks/study_report.py from the study CSV; do not edit -->",
             "",
             f"Test top-1 accuracy in %, mean ± std over seeds (n = seeds); input "
             f"{int(rows['size_px'].iloc[0])} px; {int(done['threads'].max())} CPU thread(s). "
             "Each run keeps the epoch with the best validation accuracy."]
    for (dataset, size), group in done.groupby(["dataset", "size"], sort=False):
        split = group.iloc[0]
        parts += ["", f"### {dataset}, {size} ({int(split['train_images'])} train / "
                      f"{int(split['val_images'])} val / {int(split['test_images'])} test images;"
                      f" one test image = {100 / split['test_images']:.1f} points)",
                  "", grid_table(summary, rows, dataset, size), "",
                  auto_verdict(summary, picks, dataset, size)]
    reasons = rows.loc[rows["status"] == "skipped", ["strategy", "regularizer", "reason"]]
    parts += ["", "Skipped by construction:"]
    parts += [f"- {s} + {r}: {why}" for s, r, why in reasons.drop_duplicates().to_numpy()]
    hours = done["wall_s"].sum() / 3600
    per_part = done.groupby(["dataset", "size"])["wall_s"].sum() / 60
    parts += ["", f"Total training time: {hours:.2f} h of wall clock over {len(done)} runs ("
              + ", ".join(f"{d}/{s} {m:.0f} min" for (d, s), m in per_part.items()) + ")."]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", nargs="+",
                        default=[str(ROOT / "benchmarks" / "results" / "study.csv")],
                        help="one or more study CSVs (e.g. one per background run)")
    parser.add_argument("--size-px", type=int, default=None)
    parser.add_argument("--md", default=str(ROOT / "docs" / "_study_tables.md"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    rows = pd.concat([load_rows(Path(path), args.size_px) for path in args.csv])
    auto_paths = [Path(p).with_name(Path(p).stem + "_auto.csv") for p in args.csv]
    found = [pd.read_csv(p) for p in auto_paths if p.exists()]
    picks = pd.concat(found) if found else pd.DataFrame(columns=["dataset", "size", "picked"])
    baseline_paths = [Path(p).with_name(Path(p).stem + "_baselines.csv") for p in args.csv]
    found = [pd.read_csv(p) for p in baseline_paths if p.exists()]
    baselines = pd.concat(found).drop_duplicates(["dataset", "size", "baseline"]) if found else None
    Path(args.md).write_text(render(rows, picks, baselines))
    logger.info("wrote %s", args.md)


if __name__ == "__main__":
    main()

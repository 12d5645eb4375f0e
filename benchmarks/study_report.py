"""Markdown tables from the study's CSV (``benchmarks/study.py``): test top-1 per strategy and
regulariser, the strategy ``auto`` picks against the best cell, and the time it all took."""

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


def render(rows: pd.DataFrame, picks: pd.DataFrame) -> str:
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
    parser.add_argument("--csv", default=str(ROOT / "benchmarks" / "results" / "study.csv"))
    parser.add_argument("--size-px", type=int, default=None)
    parser.add_argument("--md", default=str(ROOT / "docs" / "_study_tables.md"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    csv_path = Path(args.csv)
    rows = load_rows(csv_path, args.size_px)
    auto_path = csv_path.with_name(csv_path.stem + "_auto.csv")
    picks = pd.read_csv(auto_path) if auto_path.exists() else pd.DataFrame(
        columns=["dataset", "size"])
    Path(args.md).write_text(render(rows, picks))
    logger.info("wrote %s", args.md)


if __name__ == "__main__":
    main()

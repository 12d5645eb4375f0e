"""Figures for training, similarity, importance and evaluation results.

Every function builds a fresh ``matplotlib.figure.Figure`` (no pyplot, so no global figure
state, nothing to close, and no backend needed: importing this module changes no global
setting) and returns it unsaved: the Kedro catalog saves it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

logger = logging.getLogger(__name__)

_MAX_ANNOTATED_CLASSES = 20


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{what} needs columns {missing} but got {list(frame.columns)}; "
            "check the dataset feeding this plot."
        )


def _plot_if_present(ax: Axes, frame: pd.DataFrame, column: str, label: str, **style) -> bool:
    """Plot ``column`` against epoch when it exists and has any finite value."""
    if column not in frame.columns:
        return False
    values = pd.to_numeric(frame[column], errors="coerce")
    if not values.notna().any():
        return False
    ax.plot(frame["epoch"], values, marker="o", markersize=3, label=label, **style)
    return True


def _finish_panel(ax: Axes, title: str, ylabel: str, has_data: bool) -> None:
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    handles = ax.get_legend_handles_labels()[0]
    if handles:
        ax.legend(handles=handles, loc="best", fontsize="small")
    if not has_data:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)


def learning_curves(history: pd.DataFrame) -> Figure:
    """Loss, accuracy and regulariser term (+ learning rate on a twin axis) per epoch.

    Missing or all-NaN columns are left out of their panel instead of failing.
    """
    _require_columns(history, ["epoch"], "learning_curves")
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    loss_ax, acc_ax, reg_ax = fig.subplots(1, 3)

    has_loss = _plot_if_present(loss_ax, history, "train_loss", "train")
    has_loss |= _plot_if_present(loss_ax, history, "val_loss", "validation")
    _finish_panel(loss_ax, "Loss", "cross-entropy", has_loss)

    has_acc = _plot_if_present(acc_ax, history, "train_acc", "train")
    has_acc |= _plot_if_present(acc_ax, history, "val_acc", "validation")
    _finish_panel(acc_ax, "Accuracy", "top-1", has_acc)
    acc_ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))

    has_reg = _plot_if_present(reg_ax, history, "reg_term", "regulariser", color="tab:purple")
    lr_ax = reg_ax.twinx()
    has_lr = _plot_if_present(
        lr_ax, history, "lr", "learning rate", color="tab:gray", linestyle="--"
    )
    lr_ax.set_ylabel("learning rate")
    _finish_panel(reg_ax, "Regulariser and learning rate", "regulariser term", has_reg or has_lr)
    if has_lr:
        # One legend for both y-axes, otherwise the twin's legend hides the main one.
        handles = reg_ax.get_legend_handles_labels()[0] + lr_ax.get_legend_handles_labels()[0]
        reg_ax.legend(handles=handles, loc="best", fontsize="small")
    return fig


def confusion_matrix_figure(
    confusion: Sequence[Sequence[int]], class_names: Sequence[str], title: str = "Confusion"
) -> Figure:
    """Row-normalised confusion matrix (rows = true class); counts written when K <= 20."""
    counts = np.asarray(confusion, dtype=np.int64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"confusion must be a square K x K matrix, got shape {counts.shape}.")
    n_classes = counts.shape[0]
    if len(class_names) != n_classes:
        raise ValueError(
            f"{len(class_names)} class names for a {n_classes}-class confusion matrix."
        )
    row_totals = counts.sum(axis=1, keepdims=True)
    # A class absent from the split has an all-zero row: show 0 rather than NaN.
    rates = np.divide(counts, row_totals, out=np.zeros(counts.shape), where=row_totals > 0)

    side = min(4.0 + 0.45 * n_classes, 30.0)
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="fraction of true class", shrink=0.8)
    ticks = np.arange(n_classes)
    ax.set_xticks(ticks, labels=list(class_names), rotation=90)
    ax.set_yticks(ticks, labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n_classes <= _MAX_ANNOTATED_CLASSES:
        for (row, col), count in np.ndenumerate(counts):
            colour = "white" if rates[row, col] > 0.5 else "black"
            ax.text(col, row, str(count), ha="center", va="center", color=colour, fontsize="small")
    return fig


def _layer_axis(ax: Axes, names: Sequence[str]) -> None:
    """Layer names as x tick labels, shrinking the font as layers multiply."""
    fontsize = 8 if len(names) <= 40 else 6
    ax.set_xticks(np.arange(len(names)), labels=list(names), rotation=90, fontsize=fontsize)
    ax.set_xlim(-0.7, len(names) - 0.3)


def _width_for(n_items: int) -> float:
    return float(np.clip(0.18 * n_items + 3.0, 8.0, 24.0))


def layer_divergence_figure(df: pd.DataFrame) -> Figure:
    """Per-layer divergence from the source statistics, in depth order, with its median."""
    _require_columns(df, ["layer", "depth", "divergence"], "layer_divergence_figure")
    ordered = df.sort_values("depth", kind="stable")
    divergence = pd.to_numeric(ordered["divergence"], errors="coerce").to_numpy(dtype=float)
    fig = Figure(figsize=(_width_for(len(ordered)), 4.8), layout="constrained")
    ax = fig.subplots()
    positions = np.arange(len(ordered))
    ax.bar(positions, divergence, color="tab:blue", alpha=0.8, label="divergence")
    if np.isfinite(divergence).any():
        median = float(np.nanmedian(divergence))
        ax.axhline(median, color="tab:red", linestyle="--", label=f"median = {median:.3g}")
    _layer_axis(ax, ordered["layer"].astype(str).tolist())
    ax.set_xlabel("layer (input → output)")
    ax.set_ylabel("divergence")
    ax.set_title("Target vs source statistics per layer")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    return fig


def importance_distribution_figure(table: pd.DataFrame) -> Figure:
    """Distribution of normalised channel scores per layer and median global rank per layer.

    Layers appear in the order they first occur in ``table`` (model order).
    """
    _require_columns(
        table, ["layer", "norm_score", "global_rank"], "importance_distribution_figure"
    )
    layers = [str(name) for name in pd.unique(table["layer"].astype(str))]
    grouped = table.assign(layer=table["layer"].astype(str)).groupby("layer", sort=False)
    scores = [grouped.get_group(name)["norm_score"].to_numpy(dtype=float) for name in layers]
    median_rank = [
        float(np.nanmedian(grouped.get_group(name)["global_rank"].to_numpy(float)))
        for name in layers
    ]

    fig = Figure(figsize=(_width_for(len(layers)), 7.5), layout="constrained")
    score_ax, rank_ax = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    positions = np.arange(len(layers))
    score_ax.boxplot(
        [s[np.isfinite(s)] for s in scores],
        positions=positions,
        widths=0.6,
        flierprops={"markersize": 2},
        manage_ticks=False,
    )
    score_ax.set_ylabel("normalised score")
    score_ax.set_title("Channel importance per layer")
    score_ax.grid(axis="y", alpha=0.3)
    rank_ax.bar(positions, median_rank, color="tab:orange")
    rank_ax.set_ylabel("median global rank")
    rank_ax.grid(axis="y", alpha=0.3)
    _layer_axis(rank_ax, layers)
    rank_ax.set_xlabel("layer (model order)")
    return fig

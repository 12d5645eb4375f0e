"""Tests for ft_pipelines.core.plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from ft_pipelines.core import plots


def _assert_saves(fig: Figure, path: Path) -> None:
    fig.savefig(path)
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_backend_is_agg_and_no_pyplot_figures_leak(tmp_path: Path) -> None:
    assert plt.get_backend().lower() == "agg"
    before = plt.get_fignums()
    plots.comparison_bar_figure(pd.DataFrame({"model": ["a"], "top1": [0.5], "macro_f1": [0.4]}))
    assert plt.get_fignums() == before


def test_learning_curves_three_panels_and_twin_axis(tmp_path: Path) -> None:
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [1.0, 0.7, 0.5],
            "val_loss": [1.1, 0.8, 0.7],
            "train_acc": [0.4, 0.6, 0.7],
            "val_acc": [0.35, 0.55, 0.6],
            "reg_term": [np.nan, np.nan, np.nan],
            "lr": [0.01, 0.005, 0.001],
        }
    )
    fig = plots.learning_curves(history)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4  # loss, accuracy, regulariser + twin lr axis
    assert len(fig.axes[0].lines) == 2
    assert len(fig.axes[2].lines) == 0  # all-NaN regulariser is skipped, not plotted
    _assert_saves(fig, tmp_path / "curves.png")


def test_learning_curves_requires_epoch() -> None:
    with pytest.raises(ValueError, match="epoch"):
        plots.learning_curves(pd.DataFrame({"train_loss": [1.0]}))


def test_confusion_matrix_figure_normalises_rows(tmp_path: Path) -> None:
    fig = plots.confusion_matrix_figure([[3, 1], [0, 0]], ["cat", "dog"], title="test")
    assert len(fig.axes) == 2  # matrix + colorbar
    shown = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(np.asarray(shown), [[0.75, 0.25], [0.0, 0.0]])
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert {"3", "1", "0"} <= texts
    _assert_saves(fig, tmp_path / "confusion.png")


def test_confusion_matrix_figure_skips_counts_for_many_classes() -> None:
    confusion = np.eye(25, dtype=int).tolist()
    fig = plots.confusion_matrix_figure(confusion, [f"c{i}" for i in range(25)], title="big")
    assert len(fig.axes[0].texts) == 0
    with pytest.raises(ValueError, match="class names"):
        plots.confusion_matrix_figure(confusion, ["a"], title="bad")


def test_layer_divergence_figure(tmp_path: Path) -> None:
    df = pd.DataFrame({"layer": ["b", "a", "c"], "depth": [1, 0, 2], "divergence": [0.5, 0.1, 2.0]})
    fig = plots.layer_divergence_figure(df)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert ax.lines[0].get_ydata()[0] == pytest.approx(0.5)  # median line
    _assert_saves(fig, tmp_path / "divergence.png")


def test_importance_distribution_figure_many_layers(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    layers = [f"blocks.{i}.conv" for i in range(80)]
    table = pd.DataFrame(
        {
            "layer": np.repeat(layers, 6),
            "norm_score": rng.random(480),
            "global_rank": rng.permutation(480),
        }
    )
    fig = plots.importance_distribution_figure(table)
    assert len(fig.axes) == 2
    labels = [t.get_text() for t in fig.axes[1].get_xticklabels()]
    assert labels == layers  # model order kept
    _assert_saves(fig, tmp_path / "importance.png")


def test_pruning_tradeoff_figure(tmp_path: Path) -> None:
    rows = pd.DataFrame(
        {
            "model": ["finetuned", "pruned"],
            "macs": [400e6, 250e6],
            "top1": [0.9, 0.88],
            "latency_ms": [12.0, np.nan],
        }
    )
    fig = plots.pruning_tradeoff_figure(rows)
    assert len(fig.axes) == 1
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["finetuned\n12.0 ms", "pruned"]
    _assert_saves(fig, tmp_path / "tradeoff.png")


def test_comparison_bar_figure(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {"model": ["finetuned", "pruned"], "top1": [0.9, 0.85], "macro_f1": [0.88, 0.8]}
    )
    fig = plots.comparison_bar_figure(table)
    assert len(fig.axes) == 1
    assert len(fig.axes[0].patches) == 4
    _assert_saves(fig, tmp_path / "comparison.png")
    with pytest.raises(ValueError, match="ece"):
        plots.comparison_bar_figure(table, metrics=("ece",))

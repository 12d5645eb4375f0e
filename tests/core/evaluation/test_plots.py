"""Tests for ft_pipelines.core.evaluation.plots."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from ft_pipelines.core.evaluation import plots


def _assert_saves(fig: Figure, path: Path) -> None:
    fig.savefig(path)
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_importing_plots_changes_no_global_setting() -> None:
    # a fresh interpreter: nothing else has chosen a backend or imported pyplot yet
    code = (
        "import sys, matplotlib\n"
        "before = matplotlib.rcParams._get_backend_or_none()\n"
        "import ft_pipelines.core.evaluation.plots\n"
        "assert matplotlib.rcParams._get_backend_or_none() == before, 'backend switched'\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, check=False)
    assert result.returncode == 0, result.stderr


def test_figures_need_no_backend_and_leak_no_pyplot_figures(tmp_path: Path) -> None:
    before = plt.get_fignums()
    fig = plots.learning_curves(pd.DataFrame({"epoch": [1], "train_loss": [0.5]}))
    assert plt.get_fignums() == before
    _assert_saves(fig, tmp_path / "curves.png")


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

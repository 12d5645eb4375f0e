"""backbone.candidates: LogME ranking of bundled backbones through the pretrained_backbone stage."""

from __future__ import annotations

import pandas as pd

from ft_pipelines.core.similarity import choose_backbone
from tests.pipelines.conftest import latest, run_pipelines


def test_ties_go_to_the_cheaper_backbone():
    table = pd.DataFrame({"candidate": ["big", "small", "worse"], "logme": [0.5001, 0.5003, 0.1],
                          "macs": [900, 300, 100]})
    ranked = choose_backbone(table)
    assert ranked.loc[ranked["chosen"], "candidate"].tolist() == ["small"]


def test_default_is_one_unscored_backbone(project):
    run_pipelines(project, ["data_ingestion", "pretrained_backbone"],
                  **{"ingestion.max_per_class": 6})
    ranking = pd.read_parquet(latest(project, "08_reporting/backbone_ranking.parquet"))
    assert len(ranking) == 1 and bool(ranking["chosen"].iloc[0])


def test_candidates_are_scored_and_the_best_is_loaded(project):
    candidates = [{"source": "bundled", "architecture": "efficientnet_lite1"}]
    run_pipelines(project, ["data_ingestion", "pretrained_backbone"],
                  **{"ingestion.max_per_class": 6, "backbone.candidates": candidates})
    ranking = pd.read_parquet(latest(project, "08_reporting/backbone_ranking.parquet"))
    assert list(ranking["architecture"]) == sorted(
        ["efficientnet_lite0", "efficientnet_lite1"],
        key=lambda a: -ranking.set_index("architecture").loc[a, "logme"].round(3))
    assert ranking["logme"].notna().all() and (ranking["macs"] > 0).all()
    assert (ranking["latency_ms"] > 0).all() and ranking["chosen"].sum() == 1
    assert ranking.loc[0, "logme"] >= ranking.loc[1, "logme"] - 1e-3

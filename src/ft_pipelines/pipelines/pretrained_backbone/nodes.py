"""Thin nodes: rank the candidate backbones (when there are any), load the chosen one."""

from __future__ import annotations

import pandas as pd
from torch import nn

from ft_pipelines.core.data import split_subset
from ft_pipelines.core.evaluation import measure_latency
from ft_pipelines.core.models import load_backbone as load_network
from ft_pipelines.core.similarity import RANKING_COLUMNS, choose_backbone, score_backbone
from ft_pipelines.params import BackboneParams, RuntimeParams

_SPEC_KEYS = ["source", "architecture", "weights", "path", "library"]


def _candidates(backbone: BackboneParams) -> list[dict]:
    own = {k: getattr(backbone, k) for k in _SPEC_KEYS}
    return [own, *(c.model_dump() for c in backbone.candidates)]


def _label(spec: dict) -> str:
    where = f" {spec['path']}" if spec.get("path") else ""
    return f"{spec['source']}:{spec['architecture']}{where}"


def rank_backbones(images: pd.DataFrame, backbone: BackboneParams,
                   decode_cache_dir: str | None, runtime: RuntimeParams) -> pd.DataFrame:
    """``backbone_ranking``: LogME, H-score, params, MACs, latency per candidate; one row
    (``backbone`` itself, unscored) when ``backbone.candidates`` is empty. Features are
    computed on ``runtime.device``; the latency column is CPU latency (a comparison between
    candidates, not the deployment figure the evaluation measures)."""
    specs = _candidates(backbone)
    if len(specs) == 1:
        row = {c: None for c in RANKING_COLUMNS} | {"candidate": _label(specs[0]),
                                                     "chosen": True}
        return pd.DataFrame([row | specs[0]])
    size = backbone.input_size
    data = split_subset(images, "train", size, decode_cache_dir, backbone.ranking_max_images, 0)
    rows = []
    for spec in specs:
        model = load_network(spec["source"], spec["architecture"], spec["weights"],
                             spec["path"], size, spec["library"]).eval()
        latency = measure_latency(model, (3, size, size), warmup=2, runs=10)["median_ms"]
        scores = score_backbone(model, data, device=runtime.device)
        rows.append({"candidate": _label(spec), **scores, "latency_ms": latency, **spec})
    return choose_backbone(pd.DataFrame(rows))


def load_backbone(backbone: BackboneParams, backbone_ranking: pd.DataFrame) -> nn.Module:
    """The chosen network every later stage starts from (saved as ``pretrained_model``)."""
    chosen = backbone_ranking[backbone_ranking["chosen"].astype(bool)].iloc[0]
    spec = {k: (None if pd.isna(chosen[k]) else chosen[k]) for k in _SPEC_KEYS}
    return load_network(spec["source"], spec["architecture"], spec["weights"], spec["path"],
                        backbone.input_size, spec["library"] or "auto")

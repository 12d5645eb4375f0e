"""``lineage`` (where each run's record goes); ``evaluation``'s schema lives in
core/evaluation/settings.py."""

from __future__ import annotations

from ft_pipelines.core.evaluation.settings import EvaluationParams
from ft_pipelines.core.utils.schema import Schema


class LineageParams(Schema):
    directory: str = "data/08_reporting"    # the lineage hook writes lineage.json here


__all__ = ["EvaluationParams", "LineageParams"]

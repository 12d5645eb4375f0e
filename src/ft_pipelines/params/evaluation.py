"""``evaluation`` (how models are scored) and ``lineage`` (where each run's record goes)."""

from __future__ import annotations

from pydantic import Field

from ft_pipelines.core.utils.schema import Count, NonNegativeInt, Schema


class EvaluationParams(Schema):
    latency_runs: Count = 50             # batch-1 calls per model, spread over timing_rounds
    latency_warmup: NonNegativeInt = 10
    throughput_batch: Count = 64
    timing_rounds: int = Field(default=7, ge=5)  # rounds alternating the models timed
    probe_max_iter: Count = 2000
    pixel_baselines: bool = True            # rows pixels_logreg / pixels_svc (classical, cheap)
    pixel_size: Count = 16                  # grey pixels downsampled to pixel_size x pixel_size


class LineageParams(Schema):
    directory: str = "data/08_reporting"    # the lineage hook writes lineage.json here

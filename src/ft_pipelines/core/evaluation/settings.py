"""``evaluation``: how models are scored and timed. The timing keys are shared with ``export``
(``TimingParams``), each block with its own defaults; the schemas live with the code that reads
them and ``ft_pipelines.params`` composes them into the session's parameters."""

from __future__ import annotations

from pydantic import Field

from ft_pipelines.core.utils.schema import Count, NonNegativeInt, Schema


class TimingParams(Schema):
    """The interleaved timer's settings (``core.evaluation.cost.compare_timings``)."""

    latency_runs: Count = 50             # batch-1 calls per model, spread over timing_rounds
    latency_warmup: NonNegativeInt = 10  # untimed calls per model first
    throughput_batch: Count = 64         # batch of the throughput timing
    timing_rounds: int = Field(default=7, ge=5)  # rounds alternating the models timed


class EvaluationParams(TimingParams):
    probe_max_iter: Count = 2000
    pixel_baselines: bool = True            # rows pixels_logreg / pixels_svc (classical, cheap)
    pixel_size: Count = 16                  # grey pixels downsampled to pixel_size x pixel_size

"""``similarity``: how far the data is from the backbone's source (the schema lives with the
code that reads it; ``ft_pipelines.params`` composes it)."""

from __future__ import annotations

from pydantic import Field

from ft_pipelines.core.utils.schema import Count, Schema, Seed


class SimilarityParams(Schema):
    max_images: Count | None = 600          # train images used for the signals; null: all
    batch_size: Count = 128
    source_reference: str | None = None     # image folder from the pretraining domain
    emd_gamma: float = Field(default=0.01, gt=0)
    seed: Seed = 0
    # images are resized to this size before the network, whatever backbone.input_size is
    # (docs/strategy.md); null: measure at backbone.input_size
    analysis_size: Count | None = 96

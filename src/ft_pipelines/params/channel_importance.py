"""``importance``: TransTailor's gate training and Taylor scores."""

from __future__ import annotations

from ft_pipelines.params.base import Count, LearningRate, Schema, Seed


class ImportanceParams(Schema):
    gate_epochs: Count = 2
    gate_lr: LearningRate = 0.01
    batch_size: Count = 64
    max_images: Count | None = 512          # stratified subset of the training split; null: all
    seed: Seed = 0

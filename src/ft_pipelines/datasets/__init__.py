"""Kedro datasets the catalog needs and kedro-datasets lacks."""

from ft_pipelines.datasets.model_artifact import ModelArtifactDataset

__all__ = ["ModelArtifactDataset"]

"""Kedro datasets the catalog needs and kedro-datasets lacks."""

from ft_pipelines.datasets.model_artifact import ModelArtifactDataset
from ft_pipelines.datasets.onnx_model import OnnxModelDataset

__all__ = ["ModelArtifactDataset", "OnnxModelDataset"]

"""Kedro datasets the catalog needs: models without pickle, and kedro-datasets' parquet, JSON,
text and figure datasets saved atomically."""

from ft_pipelines.datasets.atomic import (
    AtomicJSONDataset,
    AtomicMatplotlibDataset,
    AtomicParquetDataset,
    AtomicSaveMixin,
    AtomicTextDataset,
)
from ft_pipelines.datasets.model_artifact import ModelArtifactDataset
from ft_pipelines.datasets.onnx_model import ExportReportDataset, OnnxModelDataset

__all__ = [
    "AtomicJSONDataset",
    "AtomicMatplotlibDataset",
    "AtomicParquetDataset",
    "AtomicSaveMixin",
    "AtomicTextDataset",
    "ExportReportDataset",
    "ModelArtifactDataset",
    "OnnxModelDataset",
]

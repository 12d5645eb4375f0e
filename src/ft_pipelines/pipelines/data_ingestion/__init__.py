"""data_ingestion: the user's images in, validated, split, profiled."""

from ft_pipelines.pipelines.data_ingestion.pipeline import create_pipeline

__all__ = ["create_pipeline"]

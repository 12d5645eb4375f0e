"""similarity_analysis stage."""

from ft_pipelines.pipelines.similarity_analysis.pipeline import create_pipeline

__all__ = ["create_pipeline"]

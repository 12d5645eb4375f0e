"""export stage."""

from ft_pipelines.pipelines.export.pipeline import create_pipeline

__all__ = ["create_pipeline"]

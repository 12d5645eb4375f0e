"""pruning stage."""

from ft_pipelines.pipelines.pruning.pipeline import create_pipeline

__all__ = ["create_pipeline"]

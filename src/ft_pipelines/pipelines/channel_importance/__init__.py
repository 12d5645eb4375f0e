"""channel_importance stage."""

from ft_pipelines.pipelines.channel_importance.pipeline import create_pipeline

__all__ = ["create_pipeline"]

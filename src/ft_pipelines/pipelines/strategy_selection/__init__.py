"""strategy_selection stage."""

from ft_pipelines.pipelines.strategy_selection.pipeline import create_pipeline

__all__ = ["create_pipeline"]

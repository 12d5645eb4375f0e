"""regularized_finetuning stage."""

from ft_pipelines.pipelines.regularized_finetuning.pipeline import create_pipeline

__all__ = ["create_pipeline"]

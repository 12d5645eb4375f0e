"""backbone_surgery stage."""

from ft_pipelines.pipelines.backbone_surgery.pipeline import create_pipeline

__all__ = ["create_pipeline"]

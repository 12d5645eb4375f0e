"""Stage: the pretrained network every later stage starts from."""

from ft_pipelines.pipelines.pretrained_backbone.pipeline import create_pipeline

__all__ = ["create_pipeline"]

"""predict stage (not in ``__default__``: it needs ``predict.path``)."""

from ft_pipelines.pipelines.predict.pipeline import create_pipeline

__all__ = ["create_pipeline"]

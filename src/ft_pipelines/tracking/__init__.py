"""Run tracking: every ``kedro run`` is one MLflow run (kedro-mlflow), see ``hook``."""

from ft_pipelines.tracking.hook import MlflowTrackingHook

__all__ = ["MlflowTrackingHook"]

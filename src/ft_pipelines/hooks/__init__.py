"""The project's Kedro hooks, registered in ``settings.py``: the one parameter validation
(``ParametersHook``, which the others read), the catalog entries of registered exported model
kinds, run consistency, lineage, checkpoint cleanup and MLflow tracking."""

from ft_pipelines.hooks.catalog import ExportKindsCatalogHook
from ft_pipelines.hooks.checkpoints import CheckpointCleanupHook
from ft_pipelines.hooks.consistency import RunConsistencyHook
from ft_pipelines.hooks.lineage import LineageHook
from ft_pipelines.hooks.parameters import InvalidParameters, ParametersHook
from ft_pipelines.hooks.tracking import MlflowTrackingHook

__all__ = ["CheckpointCleanupHook", "ExportKindsCatalogHook", "InvalidParameters",
           "LineageHook", "MlflowTrackingHook", "ParametersHook", "RunConsistencyHook"]

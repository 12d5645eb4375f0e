"""Project settings: configuration loader and hooks."""

from kedro.config import OmegaConfigLoader
from omegaconf.resolvers import oc

from ft_pipelines.core.utils import launched_rank
from ft_pipelines.datasets.rank_catalog import RankLocalCatalog
from ft_pipelines.hooks import (
    CheckpointCleanupHook,
    ExportKindsCatalogHook,
    LineageHook,
    MlflowTrackingHook,
    ParametersHook,
    RunConsistencyHook,
)

# ParametersHook checks the parameters before any other hook runs (tryfirst), so bad ones stop
# the session before anything happens. RunConsistencyHook pins each dataset to one version per
# run, so the versions LineageHook records are the ones the nodes received. The lineage hook
# writes its record before the tracking hook logs it (that one runs last); the checkpoint cleanup
# removes a node's checkpoints once all of its outputs are saved.
# The others read the parameters ParametersHook validated: one validation per session.
# ExportKindsCatalogHook stores a registered exported model kind that catalog.yml does not list.
PARAMETERS = ParametersHook()
HOOKS = (PARAMETERS, ExportKindsCatalogHook(), RunConsistencyHook(), LineageHook(PARAMETERS),
         CheckpointCleanupHook(PARAMETERS), MlflowTrackingHook(PARAMETERS))
# Under torchrun every rank runs this session; only rank 0 writes outputs, lineage and MLflow.
if launched_rank() > 0:
    HOOKS = (PARAMETERS, ExportKindsCatalogHook(), RunConsistencyHook())
    DATA_CATALOG_CLASS = RankLocalCatalog
# kedro-mlflow registers its own MlflowHook; MlflowTrackingHook extends it and takes its place
# (the plugin's would open a second MLflow run, and let an unreachable server fail the run).
# The distribution is named "kedro_mlflow" or "kedro-mlflow" depending on how it was packaged.
DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow", "kedro-mlflow")

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"]},
    # An environment (conf/ci, conf/local) states only what differs from conf/base.
    "merge_strategy": {"parameters": "soft", "mlflow": "soft"},
    # ${oc.env:MLFLOW_TRACKING_URI,...} in mlflow.yml (Kedro leaves oc.env off by default)
    "custom_resolvers": {"oc.env": oc.env},
}

"""Project settings: configuration loader and hooks."""

from kedro.config import OmegaConfigLoader

from ft_pipelines.hooks import LineageHook, RunConsistencyHook
from ft_pipelines.params.hooks import ParametersHook

# ParametersHook checks the parameters before any other hook runs (tryfirst), so bad ones stop
# the session before anything happens. RunConsistencyHook pins each dataset to one version per
# run, so the versions LineageHook records are the ones the nodes received.
HOOKS = (ParametersHook(), RunConsistencyHook(), LineageHook())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment (conf/ci, conf/local) states only what differs from conf/base.
    "merge_strategy": {"parameters": "soft"},
}

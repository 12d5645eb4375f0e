"""Project settings: configuration loader and hooks."""

from kedro.config import OmegaConfigLoader

from ft_pipelines.checkpoint_cleanup import CheckpointCleanupHook
from ft_pipelines.hooks import LineageHook
from ft_pipelines.params.hooks import ParametersHook

# ParametersHook checks the parameters before any other hook runs (tryfirst), so bad ones stop
# the session before anything happens.
HOOKS = (ParametersHook(), LineageHook(), CheckpointCleanupHook())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment (conf/ci, conf/local) states only what differs from conf/base.
    "merge_strategy": {"parameters": "soft"},
}

"""Run tracking with MLflow: ``records`` turns data into parameters and metrics (also used by the
study), ``registry`` and ``promotion`` register and promote the shipped model; the hook that
makes every ``kedro run`` one MLflow run is ``ft_pipelines.hooks.tracking``."""

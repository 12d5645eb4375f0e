"""Every ``kedro run`` is one MLflow run: kedro-mlflow's hook, made unable to break or stall a
run, plus what this project logs (parameters, the plan's decision, curves, evaluation metrics,
reports, plots, models, the lineage record). Settings: parameters ``mlflow.*`` and mlflow.yml."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pyarrow.parquet as pq
from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

from ft_pipelines.core.export import evaluated_recommendation
from ft_pipelines.core.models import data_fingerprint
from ft_pipelines.core.utils import atomic_write
from ft_pipelines.hooks.parameters import ParametersHook
from ft_pipelines.tracking import artifacts, promotion, records, registry

with warnings.catch_warnings():
    # kedro-mlflow's pipeline model (unused here) makes MLflow warn about type hints at import,
    # under MLflow's own warning filter: only muting the display (restored on exit) silences it
    warnings.showwarning = lambda *args, **kwargs: None
    from kedro_mlflow.config.kedro_mlflow_config import KedroMlflowConfig
    from kedro_mlflow.framework.hooks.mlflow_hook import MlflowHook

logger = logging.getLogger(__name__)

_HTTP_RETRIES = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
_HTTP_TIMEOUT = "MLFLOW_HTTP_REQUEST_TIMEOUT"
_TRACKING_URI = "MLFLOW_TRACKING_URI"
_SQLITE = "sqlite:///"


@contextmanager
def _environment(**values: str | None) -> Iterator[None]:
    """Set (or, with None, unset) environment variables for a block, then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _fail_fast(timeout_s: float) -> Any:
    """MLflow retries an unanswered request for minutes; here one try of ``timeout_s``."""
    return _environment(**{_HTTP_RETRIES: "0", _HTTP_TIMEOUT: str(max(1, round(timeout_s)))})


def sqlite_in_project(uri: str | None, project_path: Path) -> str | None:
    """``sqlite:///mlflow.db`` -> ``sqlite:////<project>/mlflow.db``: MLflow would resolve the
    path against the working directory, and reuse the first database it opened for that text
    (in a process that runs several projects, e.g. the tests)."""
    if not uri or not uri.startswith(_SQLITE) or uri.startswith(_SQLITE + "/"):
        return uri
    path, query = uri[len(_SQLITE):], ""
    if "?" in path:
        path, query = path.split("?", 1)
        query = "?" + query
    if path in ("", ":memory:"):
        return uri
    return f"{_SQLITE}{(project_path / path).resolve().as_posix()}{query}"


class MlflowTrackingHook(MlflowHook):
    """kedro-mlflow's ``MlflowHook`` (it starts, re-attaches and ends the run) with the project's
    logging; any tracking failure is one warning, and the run goes on untracked.

    Registered in settings.py in place of kedro-mlflow's own instance (disabled there): that one
    lets an unreachable server fail the run and would open a second MLflow run.
    """

    def __init__(self, parameters: ParametersHook) -> None:
        super().__init__()
        self.parameters = parameters
        self._reset()

    def _reset(self) -> None:
        # kedro-mlflow's own state: false for its disable_tracking pipelines; the run it opened
        self._is_mlflow_enabled = True
        self.run_id = None
        self.settings: dict[str, Any] = {}
        self.params: dict[str, Any] = {}
        self.catalog: Any = None
        self.save_version: str | None = None
        self.project_path = Path(".")
        self.client: MlflowClient | None = None
        self.configured = False  # kedro-mlflow's setup succeeded: it owns an MLflow run to end
        self.failed = False  # a tracking call failed: no more calls to the store this run
        self.logged_params: set[str] = set()
        self.logged_models: list[str] = []
        self.saved: set[str] = set()  # datasets this run saved

    @property
    def tracking(self) -> bool:
        """Whether this run logs: configured, on for this pipeline, nothing failed."""
        return self.configured and self._is_mlflow_enabled and not self.failed

    def _safely(self, what: str, action: Callable[..., Any], *args: Any) -> None:
        try:
            action(*args)
        except Exception as error:  # tracking must never break the run
            self.failed = True
            logger.warning("MLflow: %s failed, so this run is not tracked from here on (the run "
                           "itself goes on): %s", what, error)

    # ------------------------------------------------------------------------- run lifecycle
    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._reset()
        self.params = self.parameters.plain()
        self.settings = self.params["mlflow"]
        if not self.settings.get("enabled", True):
            self._is_mlflow_enabled = False
            logger.info("MLflow tracking is off (parameter mlflow.enabled: false)")
            # the configuration, unused and untouched by this run (`kedro mlflow ui` reads it)
            self._safely("reading mlflow.yml", self._attach_config, context)
            return
        # kedro-mlflow sets MLFLOW_TRACKING_URI for the process: keep it to this session
        with _fail_fast(float(self.settings.get("setup_timeout_s", 5))), \
                _environment(**{_TRACKING_URI: os.environ.get(_TRACKING_URI)}):
            self._safely("connecting to the tracking store", self._setup, context)
        if not self.failed:
            server = self.mlflow_config.server
            self.client = MlflowClient(server.mlflow_tracking_uri, server.mlflow_registry_uri)
            self.configured = True

    def _setup(self, context: Any) -> None:
        """kedro-mlflow's setup, with a relative ``sqlite:///`` store pinned to the project."""
        # an earlier session in this process that was interrupted (KeyboardInterrupt skips the
        # error hooks) left its run active: close it, or this session would log into it
        while mlflow.active_run() is not None:
            mlflow.end_run(status="KILLED")
        self._pinned_config(context)
        super().after_context_created(context)

    def _attach_config(self, context: Any) -> None:
        context.__setattr__("mlflow", KedroMlflowConfig.model_validate(
            self._pinned_config(context)))

    @staticmethod
    def _pinned_config(context: Any) -> dict[str, Any]:
        """mlflow.yml with relative ``sqlite:///`` paths made the project's, as kedro-mlflow
        will read it (an explicitly set configuration is returned as it is)."""
        try:
            conf = context.config_loader["mlflow"]
        except (KeyError, MissingConfigException):
            return {}  # kedro-mlflow warns and uses its defaults
        server = conf.setdefault("server", {})
        for key in ("mlflow_tracking_uri", "mlflow_registry_uri"):
            server[key] = sqlite_in_project(server.get(key), Path(context.project_path))
        context.config_loader["mlflow"] = conf
        return conf

    @hook_impl
    def after_catalog_created(self, catalog: Any, conf_catalog: dict[str, Any],
                              conf_creds: dict[str, Any], parameters: dict[str, Any],
                              save_version: str, load_versions: dict[str, str]) -> None:
        self.catalog, self.save_version = catalog, save_version
        if self.tracking:
            self._safely("preparing the catalog", super().after_catalog_created, catalog,
                         conf_catalog, conf_creds, parameters, save_version, load_versions)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any,
                            catalog: Any) -> None:
        if not self.configured or self.failed:
            return
        self.project_path = Path(run_params.get("project_path") or ".")
        self._safely("starting the MLflow run", super().before_pipeline_run, run_params,
                     pipeline, catalog)
        if self.tracking:
            self._safely("logging parameters and tags", self._log_start, run_params)

    @hook_impl
    def before_node_run(self, node: Any, catalog: Any, inputs: dict[str, Any],
                        is_async: bool) -> None:
        active = mlflow.active_run()
        # kedro-mlflow re-attaches the run in each node's thread (ThreadRunner); where it is
        # attached already, it would stack it once more per node, and a run left on the stack
        # swallows the next session's run. (It also logs the node's parameters: logged already.)
        if self.tracking and (active is None or active.info.run_id != self.run_id):
            self._safely("re-attaching the run", super().before_node_run, node, catalog,
                         inputs, is_async)

    @hook_impl(trylast=True)  # after the lineage hook has written the record
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Any,
                           catalog: Any) -> None:
        if self.tracking:
            self._safely("logging the lineage record", self._log_lineage)
        if self.tracking and self.settings.get("register", False):
            self._safely("registering the models", self._register_models)
        if self.tracking and "evaluation_metrics" in self.saved:
            self._safely("logging the model to ship as an MLflow model", self._ship)
        self._end(super().after_pipeline_run, run_params, pipeline, catalog)

    @hook_impl(trylast=True)
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any], pipeline: Any,
                          catalog: Any) -> None:
        if self.tracking:
            self._safely("logging the lineage record", self._log_lineage)
        self._end(super().on_pipeline_error, error, run_params, pipeline, catalog)

    def _end(self, end: Callable[..., Any], *args: Any) -> None:
        """Close the MLflow run; after a failure, without waiting on a server that is gone."""
        if not self.configured:
            return
        timeout = float(self.settings.get("setup_timeout_s", 5))
        with _fail_fast(timeout) if self.failed else _environment():
            try:
                end(*args)
            except Exception as error:
                logger.warning("MLflow: closing the run failed: %s", error)
            # a run left active would swallow the next session's run in this process
            while (not self._already_active_mlflow and mlflow.active_run() is not None
                   and mlflow.active_run().info.run_id == self.run_id):
                with suppress(Exception):  # end_run forgets the run before calling out
                    mlflow.end_run()
        if self.failed:
            logger.warning("MLflow: this run was only partly tracked (see the warning above)")

    # ------------------------------------------------------------------------- datasets
    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any, node: Any) -> None:
        if self.tracking and dataset_name in (self.settings.get("params") or {}):
            self._safely(f"logging {dataset_name}", self._log_record, dataset_name, data)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        self.saved.add(dataset_name)
        if self.tracking:
            self._safely(f"logging {dataset_name}", self._log_saved, dataset_name, data)

    def _log_saved(self, name: str, data: Any) -> None:
        self._log_record(name, data)
        curves = self.settings.get("curves") or {}
        if name in curves and isinstance(data, pd.DataFrame):
            self._log_batch(metrics=[Metric(key, value, _now_ms(), step)
                                     for key, value, step in
                                     records.curve_metrics(data, curves[name])])
        folder = artifacts.artifact_folder(name, self._dataset(name),
                                           list(self.settings.get("models") or []))
        if folder is not None:
            self._log_artifact(name, folder)

    def _log_record(self, name: str, data: Any) -> None:
        """A JSON record as parameters (the plan) or metrics (evaluation), as configured."""
        if not isinstance(data, dict):
            return
        param_prefixes = self.settings.get("params") or {}
        if name in param_prefixes and name not in self.logged_params:
            self.logged_params.add(name)  # loaded and saved in one run: the same record
            self._log_batch(params=records.as_params(data, param_prefixes[name]))
        metric_prefixes = self.settings.get("metrics") or {}
        if name in metric_prefixes:
            now = _now_ms()
            self._log_batch(metrics=[
                Metric(key, value, now, 0)
                for key, value in records.as_metrics(data, metric_prefixes[name]).items()])

    def _log_artifact(self, name: str, folder: str) -> None:
        dataset = self._dataset(name)
        path = artifacts.saved_path(dataset)
        if path is None:
            return
        is_model = folder.startswith("models/")
        with tempfile.TemporaryDirectory() as scratch:
            if path.is_dir() and not is_model:  # e.g. one figure per evaluated model
                fmt = (getattr(dataset, "_save_args", None) or {}).get("format", "png")
                files = artifacts.with_suffix(path, fmt, Path(scratch))
                self.client.log_artifacts(self.run_id, str(files), f"{folder}/{name}")
            elif path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), folder)
            else:
                spec = artifacts.write_safetensors_spec(path, Path(scratch))
                extras = [*artifacts.sidecars(path), *([spec] if spec else [])] if is_model else []
                for file in [path, *extras]:
                    self.client.log_artifact(self.run_id, str(file), folder)
        if is_model:
            self.logged_models.append(name)

    def _dataset(self, name: str) -> Any:
        try:
            return self.catalog[name]
        except Exception:  # a dataset created on the fly has no entry to ask
            return None

    # ------------------------------------------------------------------------- the run
    def _log_start(self, run_params: dict[str, Any]) -> None:
        tags = records.run_tags(self.params)
        if self.mlflow_config.tracking.run.name is None and not self._already_active_mlflow:
            # kedro-mlflow names a run after its pipelines only: add when, to tell runs apart
            pipelines = "+".join(run_params.get("pipeline_names") or ["__default__"])
            tags["mlflow.runName"] = f"{pipelines} {run_params.get('run_id')}"
        self._log_batch(params=records.as_params(self.params), tags=tags)
        logger.info("MLflow run %s in experiment %r (%s)", self.run_id,
                    self.mlflow_config.tracking.experiment.name,
                    self.mlflow_config.server.mlflow_tracking_uri)

    def _log_lineage(self) -> None:
        directory = self.params["lineage"]["directory"]
        path = (self.project_path / directory / "lineage.json" / str(self.save_version)
                / "lineage.json")
        if not path.is_file():
            logger.warning("MLflow: no lineage record at %s to log", path)
            return
        self.client.log_artifact(self.run_id, str(path), "lineage")

    def _register_models(self) -> None:
        """Each logged model as a new version of ``<experiment>.<dataset name>``."""
        experiment = self.mlflow_config.tracking.experiment.name
        for name in self.logged_models:
            model_name = f"{experiment}.{name}"
            try:
                self.client.create_registered_model(model_name)
            except MlflowException as error:
                if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                    raise
            version = self.client.create_model_version(
                model_name, f"runs:/{self.run_id}/models/{name}", run_id=self.run_id)
            logger.info("MLflow: registered %s version %s", model_name, version.version)

    # ------------------------------------------------------------------------- the model to ship
    def _ship(self) -> None:
        """The evaluation report's model to ship as an MLflow pyfunc model in this run, a new
        version of the registered model, promoted to the champion alias when the gates pass;
        the decision goes to the log, the report, the run (tags, reports/promotion.json)."""
        evaluation = self.catalog.load("evaluation_metrics")
        export_report = self.catalog.load("export_report")
        plan = self.catalog.load("finetune_plan")
        chosen = evaluated_recommendation(evaluation, export_report, plan) or {
            "model": None, "reason": "the evaluation measured other exported files than the "
                                     "export report describes"}
        name = chosen.get("model")
        if name is None:
            self._record_promotion({"version": None, "reason": "the evaluation report ships no "
                                    f"model ({chosen.get('reason', 'none recommended')})"})
            return
        model = self.catalog.load(name)
        images = artifacts.loaded_path(self._dataset("images"))
        info = registry.log_classifier(model, _example_images(images), self.run_id)
        candidate = promotion.Candidate(
            model=name, sha256=model.sha256, test_top1=float(evaluation[name]["top1"]),
            latency_ms=evaluation[name].get("latency_ms"),
            data_fingerprint=data_fingerprint(pd.read_parquet(
                images, columns=["image_id", "label_name", "split"])),
            class_names=model.class_names, lineage_version=str(self.save_version))
        if not (self.settings.get("registry") or {}).get("name"):
            self._record_promotion({"version": None, "reason": "mlflow.registry.name is null: "
                                    f"logged as {info.model_uri}, not registered"})
            return
        self._record_promotion(registry.register_and_promote(
            self.client, info.model_uri, self.run_id, candidate, export_report, self.settings))

    def _record_promotion(self, record: dict[str, Any]) -> None:
        if record.get("version") is None:
            logger.warning("MLflow: the model to ship is not registered: %s", record["reason"])
        else:
            logger.info("MLflow: %s version %s %s: %s", record["registered_model"],
                        record["version"], f"is the new {record['alias']}" if record["promoted"]
                        else "registered, NOT promoted", record["reason"])
            self._log_batch(tags={"registered_version": str(record["version"]),
                                  "promoted": str(record["promoted"]).lower()})
        self.client.log_dict(self.run_id, record, "reports/promotion.json")
        report = artifacts.saved_path(self._dataset("evaluation_report"))
        if report is not None and "evaluation_report" in self.saved:
            # the report of this very run: the registry decision is its last section
            atomic_write(report, lambda tmp: Path(tmp).write_text(
                report.read_text() + promotion.report_section(record)))
            self.client.log_artifact(self.run_id, str(report), "reports")

    def _log_batch(self, params: dict[str, str] | None = None,
                   tags: dict[str, str] | None = None, metrics: list[Metric] | None = None
                   ) -> None:
        """One request (MLflow splits big batches) instead of one per value."""
        self.client.log_batch(
            self.run_id,
            metrics=metrics or [],
            params=[Param(k, v) for k, v in (params or {}).items()],
            tags=[RunTag(k, v) for k, v in (tags or {}).items()],
        )


def _example_images(images: Path | None, count: int = 2) -> list[bytes]:
    """The first images of the ``images`` table: the MLflow model's input example."""
    if images is None:
        raise ValueError("no images table to take the MLflow model's input example from")
    batch = next(pq.ParquetFile(images).iter_batches(batch_size=count, columns=["image"]))
    return [value["bytes"] if isinstance(value, dict) else value
            for value in batch.column("image").to_pylist()]


def _now_ms() -> int:
    return int(pd.Timestamp.now(tz="UTC").timestamp() * 1000)

"""MLflow tracking: every ``kedro run`` is one MLflow run in the store that mlflow.yml names (the
ci environment: data/ci/mlflow.db in the throw-away project), read back with the MLflow client."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.framework.session import KedroSession
from mlflow import MlflowClient
from safetensors.torch import save_file

from ft_pipelines.hooks.tracking import sqlite_in_project
from ft_pipelines.tracking import artifacts, records
from tests.conftest import CI_CHAIN
from tests.pipelines import conftest as pipeline_tests
from tests.pipelines.conftest import run_pipelines

project = pipeline_tests.project  # the throw-away project fixture

EVALUATED_MODELS = ("linear_probe", "finetuned", "pruned")


def store(project: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{project / 'data' / 'ci' / 'mlflow.db'}")


def runs(project: Path) -> list:
    client = store(project)
    experiment = client.get_experiment_by_name("ft_pipelines")
    assert experiment is not None, "no ft_pipelines experiment in the ci store"
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time"])


def artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ----------------------------------------------------------------------------- pure conversions
def test_parameters_are_flattened_like_kedro_mlflow_and_cut_to_mlflow_limit():
    params = records.as_params({"finetune": {"batch_size": 64, "augment": {"flip": False}},
                                "splits": [0.6, 0.2], "long": "x" * 7000, "bad key!": 1})
    assert params["finetune.batch_size"] == "64"
    assert params["finetune.augment.flip"] == "False"
    assert params["splits"] == "[0.6, 0.2]"
    assert len(params["long"]) == 6000
    assert params["bad key_"] == "1"


def test_metrics_keep_model_level_numbers_only():
    evaluation = {"pruned": {"top1": 0.9, "top5": None, "ece": float("nan"), "params": 10,
                             "per_class": {"cat": {"f1": 0.5}}, "confusion": [[1]]},
                  "flag": True}
    assert records.as_metrics(evaluation) == {"pruned.top1": 0.9, "pruned.params": 10.0}
    assert records.as_metrics({"ratio": 0.3}, "pruning") == {"pruning.ratio": 0.3}


def test_curves_are_step_metrics_per_epoch():
    history = pd.DataFrame({"epoch": [1, 2], "val_acc": [0.5, np.float64(0.75)],
                            "regularizer": ["l2", "l2"]})
    assert records.curve_metrics(history, "training") == [
        ("training/val_acc", 0.5, 1), ("training/val_acc", 0.75, 2)]
    with pytest.raises(ValueError, match="'epoch' column"):
        records.curve_metrics(history.drop(columns="epoch"), "training")


def test_relative_sqlite_store_is_pinned_to_the_project(tmp_path):
    assert sqlite_in_project("sqlite:///data/ci/mlflow.db?timeout=5", tmp_path) == \
        f"sqlite:///{tmp_path.resolve()}/data/ci/mlflow.db?timeout=5"
    for uri in ("sqlite:////abs/mlflow.db", "http://host:5000", "databricks", None):
        assert sqlite_in_project(uri, tmp_path) == uri


def test_models_exports_plots_and_reports_have_artifact_folders():
    from kedro_datasets.json import JSONDataset
    from kedro_datasets.pandas import ParquetDataset

    report = JSONDataset(filepath="r.json")
    assert artifacts.artifact_folder("finetuned_model", None, ["finetuned_model"]) == \
        "models/finetuned_model"
    assert artifacts.artifact_folder("pruned_int8", None, []) == "models/pruned_int8"
    assert artifacts.artifact_folder("finetuned_onnx", report, []) == "models/finetuned_onnx"
    assert artifacts.artifact_folder("plan", report, []) == "reports"
    assert artifacts.artifact_folder("images", ParquetDataset(filepath="i.parquet"), []) is None


def test_model_spec_and_sidecar_are_found(tmp_path):
    model = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(2)}, str(model), metadata={"spec": json.dumps({"classes": 3})})
    spec = artifacts.write_safetensors_spec(model, tmp_path / "..")
    assert json.loads(spec.read_text()) == {"spec": {"classes": 3}}
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"onnx")
    (tmp_path / "model.onnx.json").write_text("{}")
    assert artifacts.sidecars(onnx) == [tmp_path / "model.onnx.json"]
    assert artifacts.write_safetensors_spec(onnx, tmp_path) is None


# ----------------------------------------------------------------------------- kedro runs
def test_a_stage_run_is_one_mlflow_run_with_every_parameter(project):
    run_pipelines(project, ["data_ingestion"])
    run_pipelines(project, ["data_ingestion"])
    first, second = runs(project)
    assert first.info.run_id != second.info.run_id
    for run in (first, second):
        assert run.info.status == "FINISHED"
        assert run.info.artifact_uri.startswith((project / "data" / "ci").resolve().as_uri())
        params, tags = run.data.params, run.data.tags
        # every parameter, not only the ones the stage reads
        assert params["ingestion.source"] == "sklearn_digits"
        assert params["finetune.batch_size"] == "64"
        assert params["mlflow.register"] == "False"
        assert tags["env"] == "ci"
        assert tags["data_source"] == "sklearn_digits"
        assert tags["backbone"] == "efficientnet_lite0 (bundled)"
        assert tags["kedro_command"] == "kedro run --pipeline=data_ingestion"
        assert run.info.run_name == f"data_ingestion {tags['run_id']}"
        lineage = sorted((project / "data/ci/08_reporting/lineage.json").iterdir())
        assert {run.data.tags["run_id"] for run in (first, second)} == {p.name for p in lineage}
        assert {"lineage/lineage.json", "reports/dataset_profile.json"} <= artifact_paths(
            store(project), run.info.run_id)


def test_mlflow_tracking_uri_names_the_store_outside_ci(project, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    with KedroSession.create(project_path=project, env="local") as session:
        context = session.load_context()
    assert context.mlflow.server.mlflow_tracking_uri == \
        f"sqlite:///{project.resolve()}/elsewhere.db"
    assert (project / "elsewhere.db").is_file()
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///elsewhere.db"  # as it was


def test_switched_off_tracking_writes_nothing(project):
    run_pipelines(project, ["data_ingestion"], **{"mlflow.enabled": False})
    assert (project / "data/ci/08_reporting/lineage.json").is_dir()  # the run itself happened
    assert not (project / "data/ci/mlflow.db").exists()
    assert not (project / "data/ci/mlruns").exists()
    with KedroSession.create(project_path=project, env="ci",
                             runtime_params={"mlflow": {"enabled": False}}) as session:
        context = session.load_context()  # what `kedro mlflow ui` reads
    assert context.mlflow.server.mlflow_tracking_uri.endswith("/data/ci/mlflow.db")
    assert not (project / "data/ci/mlflow.db").exists()


def test_an_unreachable_server_is_a_warning_and_the_run_goes_on(project, caplog):
    (project / "conf/ci/mlflow.yml").write_text(
        f"server:\n  mlflow_tracking_uri: http://127.0.0.1:{free_port()}\n")
    with caplog.at_level(logging.WARNING, logger="ft_pipelines.tracking"):
        run_pipelines(project, ["data_ingestion"])
    assert (project / "data/ci/08_reporting/lineage.json").is_dir()
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("ft_pipelines")]
    assert any("connecting to the tracking store failed" in w for w in warnings), warnings
    assert not (project / "data/ci/mlflow.db").exists()


def test_a_failed_run_is_a_failed_mlflow_run_with_its_lineage(project):
    with pytest.raises(Exception, match="ingestion.path"):
        run_pipelines(project, ["data_ingestion"],
                      **{"ingestion.source": "image_folder", "ingestion.path": "missing"})
    (run,) = runs(project)
    assert run.info.status == "FAILED"
    assert "lineage/lineage.json" in artifact_paths(store(project), run.info.run_id)


@CI_CHAIN
def test_the_ci_chain_is_one_run_with_curves_evaluation_models_and_a_ui(ci_chain, monkeypatch):
    project = ci_chain  # the session's `kedro run --env ci --params=mlflow.register=true`
    (run,) = runs(project)
    client = store(project)
    data = run.data
    assert run.info.status == "FINISHED"
    assert len(data.params) >= 10
    # the plan's decision
    assert data.params["plan.strategy"] in {"head_only", "partial_finetune", "full_finetune",
                                            "from_scratch"}
    assert data.params["plan.similarity.class"] in {"similar", "dissimilar"}
    assert float(data.params["plan.similarity.value"]) > 0
    # the evaluation, per model
    for model in EVALUATED_MODELS:
        assert 0 <= data.metrics[f"{model}.top1"] <= 1
        assert data.metrics[f"{model}.latency_ms"] > 0
    assert data.metrics["pruned.macs"] < data.metrics["finetuned.macs"]
    # per-epoch curves: one point per epoch (conf/ci trains 2 epochs, prunes with 1)
    curve = client.get_metric_history(run.info.run_id, "training/val_acc")
    assert [point.step for point in curve] == [1, 2]
    assert len(client.get_metric_history(run.info.run_id, "pruning/train_loss")) >= 1
    files = artifact_paths(client, run.info.run_id)
    assert {"reports/report.md", "lineage/lineage.json", "plots/learning_curves.png",
            "plots/confusion_matrices/pruned.png",
            "models/finetuned_model/finetuned_model.safetensors",
            "models/finetuned_model/finetuned_model.spec.json",
            "models/pruned_model/pruned_model.safetensors"} <= files
    for name in ("finetuned_model", "pruned_model"):
        (version,) = client.search_model_versions(f"name='ft_pipelines.{name}'")
        assert version.run_id == run.info.run_id
    check_ui_serves(project, run.info.run_id, monkeypatch)


def check_ui_serves(project: Path, run_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The MLflow UI server on the store that ``kedro mlflow ui`` would open (kedro-mlflow's
    ``mlflow_tracking_uri`` for the ci environment, handed to ``mlflow ui`` as
    ``--backend-store-uri``) serves its page, and its REST API lists the run. MLflow's own
    server app on a local port, in this process: ``kedro mlflow ui`` in a new interpreter took
    ~30 s to answer and stop on 2 busy cores."""
    from mlflow.server import BACKEND_STORE_URI_ENV_VAR, app, handlers
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils
    from werkzeug.serving import make_server

    with KedroSession.create(project_path=project, env="ci") as session:
        uri = session.load_context().mlflow.server.mlflow_tracking_uri
    assert uri == f"sqlite:///{project.resolve()}/data/ci/mlflow.db"
    # the server's stores (opened on the first request) and MLflow's process-wide URIs are
    # globals: the check starts without stores, and all four are restored after it
    monkeypatch.setattr(handlers, "_tracking_store", None)
    monkeypatch.setattr(handlers, "_model_registry_store", None)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    monkeypatch.setattr(registry_utils, "_registry_uri", registry_utils._registry_uri)
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.setenv(variable, os.environ.get(variable, ""))
    monkeypatch.setenv(BACKEND_STORE_URI_ENV_VAR, uri)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=10) as answer:
            assert answer.status == 200
        with urllib.request.urlopen(f"{url}/", timeout=10) as answer:
            assert b"<html" in answer.read().lower()  # the UI's page
        with urllib.request.urlopen(f"{url}/api/2.0/mlflow/runs/get?run_id={run_id}",
                                    timeout=10) as answer:
            assert json.load(answer)["run"]["info"]["run_id"] == run_id
    finally:
        server.shutdown()
        server.server_close()

"""The model to ship in the MLflow Model Registry, as a user gets it from ``kedro run --env ci``:
a registered pyfunc version with its tags, the champion alias moved only when the gates pass,
``predict.model: registry``, and ``mlflow models serve`` answering HTTP requests."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from ft_pipelines.core.export import CPU, OnnxModel, OnnxRunner, iter_inputs, predict_rows
from tests.conftest import CI_CHAIN, SLOW, copy_ci_chain
from tests.pipelines.conftest import kedro_cli, latest
from tests.test_tracking import free_port, runs, store

pytestmark = CI_CHAIN  # the session's ci chain (and its worker) serves every test here
NAME = "ft_pipelines_classifier"
# conf/ci's 2 epochs leave the model near chance (17 % test top-1 on 30 images): 12 reach ~60 %
BETTER = ("--pipelines=regularized_finetuning,export,evaluation", "--params=finetune.epochs=12")


def kedro(project: Path, *args: str) -> None:
    result = kedro_cli(project, "run", "--env", "ci", *args)
    assert result.returncode == 0, result.printed[-4000:]


def report(project: Path) -> str:
    return latest(project, "08_reporting/report.md").read_text()


def images_and_a_broken_file(project: Path, folder: Path) -> Path:
    """12 test images of the chain's own images table, and a file that is no image."""
    images = pd.read_parquet(latest(project, "03_primary/images.parquet"))
    folder.mkdir()
    for row in images[images["split"] == "test"].head(12).itertuples():
        (folder / f"{row.Index:04d}.png").write_bytes(row.image)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return folder


def test_the_ci_chain_registers_its_model_to_ship_as_champion(ci_chain):
    client = store(ci_chain)
    (run,) = runs(ci_chain)
    (version,) = client.search_model_versions(f"name='{NAME}'")
    assert client.get_model_version_by_alias(NAME, "champion").version == version.version
    evaluation = json.loads(latest(ci_chain, "08_reporting/evaluation_metrics.json").read_text())
    tags = version.tags
    shipped = tags["shipped_model"]
    assert f"**`{shipped}`**" in report(ci_chain)  # the report's "which model to ship"
    assert float(tags["test_top1"]) == evaluation[shipped]["top1"]
    assert float(tags["latency_ms"]) == evaluation[shipped]["latency_ms"]
    assert tags["sha256"] == evaluation[shipped]["sha256"]
    assert json.loads(tags["class_names"]) == [str(n) for n in range(10)]
    assert len(tags["data_fingerprint"]) == 16
    assert tags["lineage_version"] == run.data.tags["run_id"]  # lineage.json/<version>
    assert (tags["promoted"], tags["promotion_reason"]) == ("true", "first version: no "
                                                            "champion yet")
    assert version.run_id == run.info.run_id
    assert run.data.tags["promoted"] == "true"
    assert "Promoted: `champion` now points at version 1" in report(ci_chain)


@pytest.fixture(scope="module")
def two_runs(ci_chain: Path, tmp_path_factory: pytest.TempPathFactory,
             mlflow_store_template: Path) -> Path:
    """A copy of the chain (empty store): a better-trained model (version 1, champion), then a
    deliberately worse one: the chain's own 2-epoch model, its exports and export report pinned
    and evaluated again (version 2)."""
    project = copy_ci_chain(ci_chain, tmp_path_factory.mktemp("registry") / "project",
                            mlflow_store_template)
    pins = ",".join(f"{name}:{latest(project, path).parent.name}" for name, path in (
        ("finetuned_model", "06_models/finetuned_model.safetensors"),
        ("finetuned_onnx", "06_models/finetuned_onnx.onnx"),
        ("pruned_onnx", "06_models/pruned_onnx.onnx"),
        ("pruned_int8", "06_models/pruned_int8.onnx"),
        ("export_report", "08_reporting/export_report.json")))
    kedro(project, *BETTER)
    kedro(project, "--pipelines=evaluation", f"--load-versions={pins}")
    return project


@SLOW  # two more runs (a better model, then the pinned worse one): pytest -m slow
def test_a_worse_model_is_registered_but_not_promoted(two_runs):
    client = store(two_runs)
    first, second = sorted(client.search_model_versions(f"name='{NAME}'"),
                           key=lambda v: int(v.version))
    worse, best = float(second.tags["test_top1"]), float(first.tags["test_top1"])
    assert worse < best - 0.005, f"the worse settings reached {worse} vs {best}: pick worse ones"
    assert client.get_model_version_by_alias(NAME, "champion").version == first.version
    assert second.tags["promoted"] == "false"
    reason = second.tags["promotion_reason"]
    assert "more than mlflow.promotion.max_drop=0.5 below it" in reason
    text = report(two_runs)
    assert f"is version {second.version} of `{NAME}`" in text
    assert f"Not promoted: {reason}. `champion` stays at version {first.version}." in text
    first_run, second_run = runs(two_runs)
    assert second_run.data.tags["promoted"] == "false"
    promotion = client.download_artifacts(second_run.info.run_id, "reports/promotion.json")
    assert json.loads(Path(promotion).read_text())["promoted"] is False


@SLOW
def test_predict_labels_with_the_registered_champion_or_a_version(two_runs, tmp_path,
                                                                  monkeypatch):
    folder = images_and_a_broken_file(two_runs, tmp_path / "images")
    client = store(two_runs)
    for version in ("champion", "2"):
        kedro(two_runs, "--pipelines=predict", f"--params=predict.path={folder},"
              f"predict.model=registry,predict.registry_version={version}")
        table = pd.read_parquet(latest(two_runs, "07_model_output/predictions.parquet"))
        number = "1" if version == "champion" else "2"
        sha = client.get_model_version(NAME, number).tags["sha256"]
        described = f"models:/{NAME}{'@champion' if number == '1' else '/2'} (version {number})"
        assert set(table["model"]) == {f"{described}@{sha[:12]}"}
        assert table["error"].notna().tolist() == [False] * 12 + [True]  # broken.png last
    result = kedro_cli(two_runs, "run", "--env", "ci", "--pipelines=predict",
                       f"--params=predict.path={folder},predict.model=registry,"
                       "predict.registry_version=9")
    assert result.returncode != 0
    assert "models:/ft_pipelines_classifier/9 is not in the model registry" in " ".join(
        result.printed.split())


def test_mlflow_models_serve_answers_images_over_http(ci_chain, tmp_path):
    """``mlflow models serve`` (a new process, as a user starts it) on the chain's champion:
    12 real images and a broken file -> 13 answers, one error, the classes the predict
    pipeline gives with the same model."""
    folder = images_and_a_broken_file(ci_chain, tmp_path / "images")
    files = sorted(folder.iterdir())
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{ci_chain}/data/ci/mlflow.db"}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}@champion",
         "--env-manager", "local", "--host", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/ping", server)
        body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [
            [base64.b64encode(f.read_bytes()).decode()] for f in files]}}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body,
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            predictions = json.load(answer)["predictions"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the command and the uvicorn server it started
        server.wait(timeout=30)
    assert len(predictions) == 13
    errors = [f.name for f, row in zip(files, predictions, strict=True)
              if row["error"] is not None]  # JSON null for the readable images
    assert errors == ["broken.png"]
    assert predictions[-1]["predicted_class"] is None and "not a readable image" in \
        predictions[-1]["error"]
    # the predict pipeline's code on the exported file the champion holds
    shipped = store(ci_chain).get_model_version_by_alias(NAME, "champion").tags["shipped_model"]
    onnx = latest(ci_chain, f"06_models/{shipped}.onnx")
    model = OnnxModel(onnx.read_bytes(), json.loads(onnx.with_suffix(".json").read_text()))
    expected = list(predict_rows(OnnxRunner(model, CPU, 1), iter_inputs(folder)))
    assert [row["predicted_class"] for row in predictions] == [
        row["predicted_class"] for row in expected]
    assert predictions[0]["top5"][0]["class"] == predictions[0]["predicted_class"]


def wait_until_up(url: str, server: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"mlflow models serve exited {server.returncode}: "
                                 f"{server.stdout.read().decode()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise AssertionError(f"mlflow models serve did not answer {url} in {timeout_s} s")

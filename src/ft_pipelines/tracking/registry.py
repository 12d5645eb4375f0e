"""The MLflow side of shipping a model: the exported classifier as an MLflow pyfunc model
(logged from code: loading and serving it need neither torch nor this package), a new version
of the registered model with its tags, the champion alias moved when ``promotion`` says so,
and a registered version loaded back for the predict pipeline."""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.types import ColSpec, DataType, Schema
from mlflow.types.schema import Array, Object, Property

from ft_pipelines import serving
from ft_pipelines.core.export import OnnxModel
from ft_pipelines.tracking import promotion

logger = logging.getLogger(__name__)

SERVING_DIR = Path(serving.__file__).parent
MODEL_CODE = SERVING_DIR / "mlflow_model.py"            # the PythonModel, run by MLflow at load
CODE_PATHS = [SERVING_DIR / "image_classifier.py"]      # what it imports, numpy + Pillow only
ARTIFACT_NAME = "classifier"
# what loading and serving import (mlflow_model.py, image_classifier.py), at the versions here
REQUIREMENTS = ("mlflow", "onnxruntime", "numpy", "pillow", "pandas")


def signature() -> ModelSignature:
    """``image`` (encoded bytes; JSON requests send base64) -> the predict table's columns."""
    top5 = Array(Object([Property("class", DataType.string),
                         Property("probability", DataType.double)]))
    return ModelSignature(
        inputs=Schema([ColSpec(DataType.binary, "image")]),
        outputs=Schema([ColSpec(DataType.string, "predicted_class", required=False),
                        ColSpec(DataType.double, "probability", required=False),
                        ColSpec(top5, "top5", required=False),
                        ColSpec(DataType.string, "error", required=False)]))


def requirements() -> list[str]:
    return [f"{name}=={installed_version(name)}" for name in REQUIREMENTS]


@contextmanager
def _serving_code_importable() -> Iterator[None]:
    """MLflow runs the model code once while logging it (to check it and its input example),
    before ``code_paths`` are in place: its ``import image_classifier`` needs the folder."""
    sys.path.insert(0, str(SERVING_DIR))
    try:
        yield
    finally:
        sys.path.remove(str(SERVING_DIR))


@contextmanager
def pyfunc_arguments(model: OnnxModel, examples: list[bytes]) -> Iterator[dict[str, Any]]:
    """What ``mlflow.pyfunc.log_model`` / ``save_model`` take for ``model`` (files in a
    scratch folder that lasts the block)."""
    with tempfile.TemporaryDirectory() as scratch, _serving_code_importable():
        onnx, sidecar = Path(scratch) / "model.onnx", Path(scratch) / "model.json"
        onnx.write_bytes(model.model_bytes)
        sidecar.write_text(json.dumps(model.sidecar, indent=2))
        yield {"python_model": str(MODEL_CODE), "code_paths": [str(p) for p in CODE_PATHS],
               "artifacts": {"onnx": str(onnx), "sidecar": str(sidecar)},
               "signature": signature(), "input_example": pd.DataFrame({"image": examples}),
               "pip_requirements": requirements()}


def log_classifier(model: OnnxModel, examples: list[bytes], run_id: str) -> Any:
    """``model`` as an MLflow pyfunc model named ``classifier`` in the run; its ModelInfo."""
    with pyfunc_arguments(model, examples) as arguments, _attached(run_id):
        return mlflow.pyfunc.log_model(name=ARTIFACT_NAME, **arguments)


@contextmanager
def _attached(run_id: str) -> Iterator[None]:
    """The fluent API's active run is ``run_id`` (kedro-mlflow's, already active or not)."""
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        yield
        return
    with mlflow.start_run(run_id=run_id, nested=active is not None):
        yield


def current_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version ``alias`` points at, or None (no such model or alias yet)."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def register_and_promote(client: MlflowClient, model_uri: str, run_id: str,
                         candidate: promotion.Candidate, export_report: dict[str, Any],
                         settings: dict[str, Any]) -> dict[str, Any]:
    """A new version of ``settings.registry.name`` tagged with ``candidate``; the alias moved
    to it when the gates pass. Returns the promotion record (report, log, run artifact)."""
    name = settings["registry"]["name"]
    gates = settings["promotion"]
    alias = gates["alias"]
    champion = current_version(client, name, alias)
    champion_tags = None if champion is None else {**champion.tags, "version": champion.version}
    promote, reason = promotion.decide(
        candidate, champion_tags, max_drop=float(gates["max_drop"]), force=bool(gates["force"]),
        export_failure=promotion.export_check_failure(export_report, candidate.model,
                                                      candidate.sha256),
        ships=True)  # the candidate is the evaluation report's model to ship
    registered = mlflow.register_model(model_uri, name, tags=candidate.tags())
    client.set_model_version_tag(name, registered.version, "promoted", str(promote).lower())
    client.set_model_version_tag(name, registered.version, "promotion_reason", reason)
    if promote:
        client.set_registered_model_alias(name, alias, registered.version)
    return {"registered_model": name, "version": registered.version, "alias": alias,
            "promoted": promote, "reason": reason, "run_id": run_id, "model": candidate.model,
            "champion_version": champion.version if champion else None,
            "candidate": candidate.tags()}


def model_uri(name: str, version: str) -> str:
    """``models:/name/3`` for a number, ``models:/name@alias`` for an alias."""
    return f"models:/{name}/{version}" if version.isdigit() else f"models:/{name}@{version}"


def load_registered(name: str, version: str) -> tuple[OnnxModel, str]:
    """The ONNX file and sidecar of a registered version, and which version it is."""
    uri = model_uri(name, version)
    with tempfile.TemporaryDirectory() as scratch:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=scratch))
        except MlflowException as error:
            raise ValueError(f"predict.model=registry: {uri} is not in the model registry at "
                             f"{mlflow.get_registry_uri()} ({error.message}); register one "
                             "with a default `kedro run`, or set predict.registry_version"
                             ) from error
        flavor = Model.load(str(local)).flavors["python_function"]
        paths = {key: local / entry["path"] for key, entry in flavor["artifacts"].items()}
        model = OnnxModel(paths["onnx"].read_bytes(), json.loads(paths["sidecar"].read_text()))
    resolved = (MlflowClient().get_model_version(name, version) if version.isdigit()
                else MlflowClient().get_model_version_by_alias(name, version))
    return model, f"{uri} (version {resolved.version})"

"""A throw-away copy of the project (configuration only; code is the installed package), so
pipeline tests never touch the real data/ folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copy(ROOT / ".telemetry", tmp_path / ".telemetry")
    shutil.copytree(ROOT / "conf", tmp_path / "conf", ignore=shutil.ignore_patterns("local"))
    (tmp_path / "conf" / "local").mkdir()
    (tmp_path / "src").mkdir()  # kedro checks it exists; the code is the installed package
    bootstrap_project(tmp_path)
    # parameters with paths (decode cache, checkpoints) are relative to where kedro runs
    monkeypatch.chdir(tmp_path)
    return tmp_path


def nested(dotted: dict) -> dict:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``, as ``kedro run --params`` parses them."""
    result: dict = {}
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        target = result
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return result


def run_pipelines(project: Path, pipelines: list[str], **runtime_params) -> dict:
    with KedroSession.create(project_path=project, env="ci",
                             runtime_params=nested(runtime_params) or None) as session:
        return session.run(pipeline_names=pipelines)


def latest(project: Path, relative: str) -> Path:
    """Newest version file of a versioned dataset under data/ci."""
    versions = sorted((project / "data" / "ci" / relative).iterdir())
    name = Path(relative).name
    return versions[-1] / name

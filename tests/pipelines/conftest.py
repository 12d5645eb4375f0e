"""A throw-away copy of the project (configuration only; code is the installed package), so
pipeline tests never touch the real data/ folder."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from tests.project_copy import copy_project


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy_project(tmp_path)
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


def kedro_cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    """``kedro run --env ci ARGS`` in ``project`` as a user types it (PYTHONPATH is inherited:
    a worktree's src/ is the code that runs)."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
           "COLUMNS": "200"}
    return subprocess.run(["kedro", "run", "--env", "ci", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def run_error(project: Path, pipelines: list[str], **runtime_params) -> BaseException:
    """The exception of a run that must fail, run in-process (the session, hooks and runner of
    ``kedro run``, without a new interpreter)."""
    with pytest.raises(Exception) as failure:  # noqa: PT011 (the caller checks the message)
        run_pipelines(project, pipelines, **runtime_params)
    return failure.value


def last_error(error: BaseException) -> str:
    """``Type: message`` as the last lines of a failed ``kedro run`` show it, squeezed."""
    return squeezed(f"{type(error).__name__}: {error}")


def error_chain(error: BaseException | None) -> str:
    """The messages of ``error`` and of the exceptions it was raised from, squeezed."""
    messages = []
    while error is not None and len(messages) < 10:
        messages.append(f"{type(error).__name__}: {error}")
        error = error.__cause__ or error.__context__
    return squeezed("\n".join(messages))


def squeezed(text: str) -> str:
    """``text`` without whitespace: rich wraps long messages wherever it likes."""
    return "".join(text.split())

"""A throw-away copy of the project (configuration only; code is the installed package), so
pipeline tests never touch the real data/ folder."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from kedro.framework.cli.cli import KedroCLI
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


@dataclass(frozen=True)
class CliResult:
    """What ``kedro ...`` returned and printed, with ``printed`` as a terminal shows it."""

    returncode: int
    output: str  # stdout and stderr, interleaved
    exception: BaseException | None  # not a click exit: what Python prints at exit

    @property
    def printed(self) -> str:
        if self.exception is None:
            return self.output
        trace = "".join(traceback.format_exception(self.exception))
        return self.output + trace


def kedro_cli(project: Path, *args: str) -> CliResult:
    """``kedro ARGS`` in ``project`` as a user types it, through Kedro's own command line (the
    click group the ``kedro`` executable runs: argument parsing, CLI hooks, session, exit code),
    in this process: a new interpreter would spend ~8 s importing what this one has imported.
    The executable itself runs in .ci/run (``kedro run``, ``kedro run --env ci``) and, as
    ``python -m ft_pipelines``, in tests/pipelines/test_torchrun.py."""
    env = {"KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "COLUMNS": "200"}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)  # parameters with paths are relative to where kedro runs
        result = CliRunner().invoke(KedroCLI(project), list(args), env=env)
    exception = None if isinstance(result.exception, SystemExit) else result.exception
    return CliResult(result.exit_code, result.output, exception)


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

"""notebooks/walkthrough.ipynb runs top to bottom in the small (ci) environment, on a
throw-away copy of the project so the real data/ is untouched."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import empty_mlflow_store
from tests.project_copy import copy_project as copy_project_config

# its module-scoped fixture is built once: all its tests in one xdist worker
pytestmark = pytest.mark.xdist_group("notebook")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "walkthrough.ipynb"
CELL_TIMEOUT_S = 900  # the run cell trains and prunes: about 2 minutes on 2 idle cores


def copy_project(destination: Path) -> Path:
    """The shared project copy plus a notebooks/ folder for the kernel to start in."""
    copy_project_config(destination)
    (destination / "notebooks").mkdir()
    return destination


def outputs_of(notebook: nbformat.NotebookNode) -> list[dict]:
    return [output for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.get("outputs", [])]


def text_of(output: dict) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    data = output.get("data", {})
    return data.get("text/plain", "") + data.get("text/markdown", "")


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory,
             mlflow_store_template: Path) -> tuple[nbformat.NotebookNode, Path]:
    project = copy_project(tmp_path_factory.mktemp("notebook_project"))
    # an empty MLflow store as a first run creates it: the kernel skips its ~50 migrations
    (project / "data" / "ci").mkdir(parents=True)
    shutil.copy(empty_mlflow_store(mlflow_store_template), project / "data/ci/mlflow.db")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    patch = pytest.MonkeyPatch()
    # the kernel inherits the environment: the ci configuration, the copy, no telemetry
    for name, value in {"FT_PIPELINES_ENV": "ci", "FT_PIPELINES_ROOT": str(project),
                        "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}.items():
        patch.setenv(name, value)
    try:
        client = NotebookClient(notebook, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                                resources={"metadata": {"path": str(project / "notebooks")}})
        client.execute()  # raises CellExecutionError on the first failing cell
    finally:
        patch.undo()
    return notebook, project


def test_no_cell_errors(executed):
    notebook, _ = executed
    errors = [o for o in outputs_of(notebook) if o.get("output_type") == "error"]
    assert not errors, [f"{e['ename']}: {e['evalue']}" for e in errors]
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code_cells)


def test_it_ran_the_pipeline_in_the_copy(executed):
    notebook, project = executed
    first_output = text_of(outputs_of(notebook)[0])
    assert str(project) in first_output and "'ci'" in first_output
    assert (project / "data" / "ci" / "08_reporting" / "report.md").is_dir()


def test_the_saved_report_is_printed(executed):
    notebook, project = executed
    versions = sorted((project / "data" / "ci" / "08_reporting" / "report.md").iterdir())
    report = (versions[-1] / "report.md").read_text().strip()
    assert "# ft_pipelines report" in report
    assert any(report in text_of(output) for output in outputs_of(notebook))


def test_learning_curves_are_shown(executed):
    notebook, _ = executed
    assert any("image/png" in output.get("data", {}) for output in outputs_of(notebook))

"""notebooks/walkthrough.ipynb runs top to bottom in the small (ci) environment, on a
throw-away copy of the session's ci chain (``ci_chain``) so the real data/ is untouched.

With the chain's outputs present the notebook takes its ``RUN = None`` branch: it loads the
newest outputs instead of running the pipeline again (~25 s). Its run branch is one
``session.run()`` of ``__default__``, which is what ``ci_chain`` itself runs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import CI_CHAIN, copy_ci_chain

pytestmark = CI_CHAIN  # reads the session's ci chain

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "walkthrough.ipynb"
CELL_TIMEOUT_S = 900  # a run cell (RUN = True) trains and prunes: minutes on 2 cores


def outputs_of(notebook: nbformat.NotebookNode) -> list[dict]:
    return [output for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.get("outputs", [])]


def text_of(output: dict) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    data = output.get("data", {})
    return data.get("text/plain", "") + data.get("text/markdown", "")


@pytest.fixture(scope="module")
def executed(ci_chain: Path, tmp_path_factory: pytest.TempPathFactory,
             mlflow_store_template: Path) -> tuple[nbformat.NotebookNode, Path]:
    project = copy_ci_chain(ci_chain, tmp_path_factory.mktemp("notebook") / "project",
                            mlflow_store_template)
    (project / "notebooks").mkdir()  # where the kernel starts
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    patch = pytest.MonkeyPatch()
    # the kernel inherits the environment: the ci configuration, the copy, no telemetry
    for name, value in {"FT_PIPELINES_ENV": "ci", "FT_PIPELINES_ROOT": str(project),
                        "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}.items():
        patch.setenv(name, value)
    try:
        # "immediate": the kernel is killed once the last cell ran, not asked to exit (its
        # orderly exit with torch loaded took ~3 s)
        client = NotebookClient(notebook, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                                resources={"metadata": {"path": str(project / "notebooks")}},
                                shutdown_kernel="immediate")
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


def test_it_read_the_outputs_of_the_copy(executed):
    notebook, project = executed
    first_output = text_of(outputs_of(notebook)[0])
    assert str(project) in first_output and "'ci'" in first_output
    assert any("Loading the newest saved outputs" in text_of(output)
               for output in outputs_of(notebook))


def test_the_saved_report_is_printed(executed):
    notebook, project = executed
    versions = sorted((project / "data" / "ci" / "08_reporting" / "report.md").iterdir())
    report = (versions[-1] / "report.md").read_text().strip()
    assert "# ft_pipelines report" in report
    assert any(report in text_of(output) for output in outputs_of(notebook))


def test_learning_curves_are_shown(executed):
    notebook, _ = executed
    assert any("image/png" in output.get("data", {}) for output in outputs_of(notebook))

"""One stage under torchrun, on top of the session's ci chain: both launched processes train
(data-parallel, gloo), rank 0 alone writes the catalog outputs, the lineage record and the
checkpoints."""

import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import CI_CHAIN
from tests.pipelines.conftest import latest


def versions(project, dataset: str) -> set[str]:
    return {path.name for path in (project / "data/ci" / dataset).iterdir()}


@CI_CHAIN
@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH")
def test_torchrun_trains_on_two_ranks_and_writes_once(ci_chain_copy):
    project = ci_chain_copy  # the stages up to surgery have run (the session's ci chain)
    models_before = versions(project, "06_models/finetuned_model.safetensors")
    lineage_before = versions(project, "08_reporting/lineage.json")
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = ["torchrun", "--standalone", "--nproc-per-node", "2", "-m", "ft_pipelines",
               "--env", "ci", "--pipelines=regularized_finetuning"]
    result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True,
                            timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    models = versions(project, "06_models/finetuned_model.safetensors") - models_before
    assert len(models) == 1  # one new version: rank 1's save stayed in its memory
    assert len(versions(project, "08_reporting/lineage.json") - lineage_before) == 1
    history = pd.read_parquet(latest(project, "07_model_output/training_history.parquet"))
    assert set(history["processes"]) == {2}
    assert set(history["backend"]) == {"gloo"}

"""One stage under torchrun: both launched processes train (data-parallel, gloo), rank 0 alone
writes the catalog outputs, the lineage record and the checkpoints."""

import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from tests.pipelines.conftest import latest, run_pipelines

UPSTREAM = ["data_ingestion", "pretrained_backbone", "similarity_analysis", "strategy_selection",
            "backbone_surgery"]


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH")
def test_torchrun_trains_on_two_ranks_and_writes_once(project):
    run_pipelines(project, UPSTREAM)
    lineage_before = len(list((project / "data/ci/08_reporting/lineage.json").iterdir()))
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = ["torchrun", "--standalone", "--nproc-per-node", "2", "-m", "ft_pipelines",
               "--env", "ci", "--pipelines=regularized_finetuning"]
    result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True,
                            timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    models = list((project / "data/ci/06_models/finetuned_model.safetensors").iterdir())
    assert len(models) == 1  # one version: rank 1's save stayed in its memory
    lineage = list((project / "data/ci/08_reporting/lineage.json").iterdir())
    assert len(lineage) == lineage_before + 1
    history = pd.read_parquet(latest(project, "07_model_output/training_history.parquet"))
    assert set(history["processes"]) == {2}
    assert set(history["backend"]) == {"gloo"}

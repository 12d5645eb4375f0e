"""Parameters are checked when a Kedro session starts, for the whole configuration: a misspelt
key or a bad value stops ``kedro run`` before any node (nothing written), naming the full key;
``runtime.threads`` is applied and recorded with the environment in the run's lineage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ft_pipelines.hooks import InvalidParameters
from tests.pipelines.conftest import kedro_cli, latest, run_error, run_pipelines
from tests.project_copy import copy_project


@pytest.fixture()
def fresh_project(tmp_path: Path) -> Path:
    return copy_project(tmp_path)


# Misspelt keys of stages the run does not even include (data_ingestion only runs ingestion).
MISSPELT = {
    "finetune.batchsize": "`finetune.batchsize`: unknown key; did you mean "
                          "`finetune.batch_size`?",
    "pruning.ratoi": "`pruning.ratoi`: unknown key; did you mean `pruning.ratio`?",
    "ingestion.max_per_clas": "`ingestion.max_per_clas`: unknown key; did you mean "
                              "`ingestion.max_per_class`?",
}


def test_kedro_run_stops_on_a_misspelt_key_naming_it(fresh_project):
    # the command as a user types it: exit code and what it prints
    result = kedro_cli(fresh_project, "run", "--env", "ci", "--pipelines=data_ingestion",
                       "--params=finetune.batchsize=32")
    assert result.returncode != 0
    assert MISSPELT["finetune.batchsize"] in result.output, result.printed[-3000:]
    assert "Traceback" not in result.printed  # one message, no stack
    assert not (fresh_project / "data").exists()  # no node ran, no version was written


# The same session start in-process (the hook that stops the command above raises this error).
@pytest.mark.parametrize(("key", "value"), [("finetune.batchsize", 32), ("pruning.ratoi", 0.5),
                                            ("ingestion.max_per_clas", 3)])
def test_a_session_stops_on_a_misspelt_key_naming_it(project, key, value):
    error = run_error(project, ["data_ingestion"], **{key: value})
    assert isinstance(error, InvalidParameters)
    assert MISSPELT[key] in str(error)
    assert not (project / "data").exists()  # no node ran, no version was written


def test_a_session_stops_on_bad_values_before_any_node_naming_each(project):
    error = run_error(project, ["data_ingestion"], **{"finetune.lr_new": -1,
                                                      "finetune.epochs": 0,
                                                      "pruning.ratio": 1.5})
    assert isinstance(error, InvalidParameters)
    for expected in ("`finetune.lr_new`: must be > 0, got -1",
                     "`finetune.epochs`: must be >= 1, got 0",
                     "`pruning.ratio`: must be < 1, got 1.5"):
        assert expected in str(error), str(error)
    assert not (project / "data").exists()


def test_threads_are_applied_and_the_environment_recorded(project):
    before = torch.get_num_threads()
    try:
        run_pipelines(project, ["data_ingestion"], **{"runtime.threads": 1})
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    record = json.loads(latest(project, "08_reporting/lineage.json").read_text())
    assert record["parameters"]["runtime"]["threads"] == 1
    environment = record["environment"]
    assert environment["threads"]["intra_op"] == 1
    assert environment["threads"]["OMP_NUM_THREADS"] == "1"
    assert environment["versions"]["torch"] and environment["cpu"]["model"]
    # the lineage holds every parameter with its default, as plain values
    assert record["parameters"]["finetune"]["batch_size"] == 64
    assert record["parameters"]["pruning"]["ratio"] == "auto"  # conf/ci


def test_the_configuration_is_validated_once_per_run(project, monkeypatch):
    """One check of the whole configuration per ``kedro run``: the lineage, checkpoint and
    tracking hooks and the nodes read the ParametersHook's typed object, none re-validates."""
    from ft_pipelines.params import Parameters

    calls = []
    validate = Parameters.model_validate.__func__

    def counted(cls, *args, **kwargs):
        calls.append(cls)
        return validate(cls, *args, **kwargs)

    monkeypatch.setattr(Parameters, "model_validate", classmethod(counted))
    run_pipelines(project, ["data_ingestion"])
    assert len(calls) == 1

"""runtime.threads is applied (torch and the variables child processes read) and the
environment a run depends on is described."""

from __future__ import annotations

import os

import pytest
import torch

from ft_pipelines.core.utils import environment


@pytest.fixture()
def restore_threads(monkeypatch: pytest.MonkeyPatch):
    for variable in environment.THREAD_VARIABLES:
        monkeypatch.setenv(variable, os.environ.get(variable, ""))  # restored after the test
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_are_applied_to_torch_and_to_child_processes(restore_threads):
    assert environment.apply_threads(1) == 1
    assert torch.get_num_threads() == 1
    assert os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "1"


def test_inter_op_threads_settable_once_do_not_fail_a_second_session(restore_threads):
    environment.apply_threads(1)
    environment.apply_threads(2)  # inter-op threads are fixed by now: kept, no error
    assert torch.get_num_threads() == 2


def test_null_threads_means_the_callers_omp_setting_else_every_core(monkeypatch):
    monkeypatch.setattr(environment, "_INHERITED_OMP", "3")
    assert environment.resolve_threads(None) == 3
    assert environment.resolve_threads(5) == 5
    monkeypatch.setattr(environment, "_INHERITED_OMP", None)
    assert environment.resolve_threads(None) == environment.available_cores() >= 1


def test_the_record_names_threads_device_versions_and_cpu():
    record = environment.environment_record()
    assert record["threads"]["intra_op"] == torch.get_num_threads()
    assert record["device"]["auto_resolves_to"] in ("cpu", "cuda")
    versions = record["versions"]
    for name in ("ft_pipelines", "python", "torch", "torchvision", "timm", "torch-pruning",
                 "kedro", "numpy"):
        assert versions[name], name
    assert versions["torch"] == torch.__version__.split("+")[0]
    assert record["cpu"]["model"] and record["cpu"]["available_cores"] >= 1
    assert record["platform"]

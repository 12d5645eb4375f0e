"""One stage under torchrun, on top of the session's ci chain: two launches acting as two nodes
(c10d rendezvous on 127.0.0.1) train as one world and write once, with the weights of the
same 2-process run started by the node; and torchrun's elastic restart after a lost worker
resumes from the last completed epoch's checkpoint instead of starting over."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from ft_pipelines.core.training.checkpoint import load_checkpoint
from tests.conftest import CI_CHAIN, SLOW
from tests.pipelines.conftest import kedro_cli, latest

pytestmark = [CI_CHAIN, SLOW, pytest.mark.skipif(shutil.which("torchrun") is None,
                                           reason="torchrun is not on PATH")]
STAGE = ["-m", "ft_pipelines", "--env", "ci", "--pipelines=regularized_finetuning"]
MODELS = "06_models/finetuned_model.safetensors"


def versions(project: Path, dataset: str) -> set[str]:
    return {path.name for path in (project / "data/ci" / dataset).iterdir()}


def _env() -> dict[str, str]:
    return {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
            "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _new_weights(project: Path, before: set[str]) -> dict:
    (version,) = versions(project, MODELS) - before  # exactly one new version
    return load_file(project / "data/ci" / MODELS / version / Path(MODELS).name)


def test_two_nodes_train_as_one_world_and_write_once(ci_chain_copy):
    project = ci_chain_copy  # the stages up to surgery have run (the session's ci chain)
    before = versions(project, MODELS)
    lineage_before = versions(project, "08_reporting/lineage.json")
    port = _free_port()
    nodes = [subprocess.Popen(
        ["torchrun", "--nnodes", "2", "--node-rank", str(node), "--nproc-per-node", "1",
         "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", *STAGE],
        cwd=project, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for node in (0, 1)]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    two_nodes = _new_weights(project, before)
    assert len(versions(project, "08_reporting/lineage.json") - lineage_before) == 1
    history = pd.read_parquet(latest(project, "07_model_output/training_history.parquet"))
    assert set(history["processes"]) == {2} and set(history["backend"]) == {"gloo"}

    # the same stage, 2 processes started by the node itself: the same weights (to round-off)
    before = versions(project, MODELS)
    result = kedro_cli(project, "run", "--env", "ci", "--pipelines=regularized_finetuning",
                       "--params=runtime.distributed.processes=2")
    assert result.returncode == 0, result.printed[-3000:]
    spawned = _new_weights(project, before)
    assert spawned.keys() == two_nodes.keys()
    for name, value in spawned.items():
        torch.testing.assert_close(value, two_nodes[name], rtol=1e-4, atol=1e-5, msg=name)


def _rank_pid(agent: subprocess.Popen, rank: int) -> int | None:
    """The pid of the worker torchrun's agent started as ``rank`` (from its environment)."""
    children = subprocess.run(["pgrep", "-P", str(agent.pid)], capture_output=True, text=True,
                              check=False).stdout.split()
    for pid in children:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:  # ended meanwhile
            continue
        if f"RANK={rank}".encode() in environ:
            return int(pid)
    return None


def _wait_for_epoch(folder: Path, epoch: int, agent: subprocess.Popen, limit_s: float) -> int:
    """Block until a checkpoint under ``folder`` has reached ``epoch``; returns its epoch."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and agent.poll() is None:
        for path in folder.glob("finetune-*/checkpoint.safetensors"):
            try:
                reached = load_checkpoint(path.parent)[1]["epoch"]
            except Exception:  # noqa: BLE001 (being replaced right now: look again)
                continue
            if reached >= epoch:
                return reached
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint of epoch {epoch} within {limit_s} s")


def test_elastic_restart_resumes_from_the_last_checkpoint(ci_chain_copy):
    project, epochs = ci_chain_copy, 12
    before = versions(project, MODELS)
    agent = subprocess.Popen(
        ["torchrun", "--standalone", "--nproc-per-node", "2", "--max-restarts", "1",
         "--monitor-interval", "0.1", *STAGE, f"--params=finetune.epochs={epochs}"],
        cwd=project, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        killed_after = _wait_for_epoch(project / "data/ci/06_models/checkpoints", 2, agent, 300)
        assert killed_after < epochs, "training ended before the kill: lengthen it"
        os.kill(_rank_pid(agent, 1), signal.SIGKILL)  # a lost worker in the middle of training
        output = agent.communicate(timeout=600)[0]
    finally:
        agent.kill()
    assert agent.returncode == 0, output[-4000:]
    _new_weights(project, before)  # one new version, written once by the restarted rank 0
    history = pd.read_parquet(latest(project, "07_model_output/training_history.parquet"))
    assert len(history) == epochs and set(history["processes"]) == {2}
    (resumed,) = set(history["resumed_after_epoch"])
    assert killed_after <= resumed < epochs  # continued from its checkpoint, not from scratch

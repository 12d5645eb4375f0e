"""Shared fixtures: tiny data, the bundled backbone and one whole ci chain, each built once per
session (per xdist worker)."""

from __future__ import annotations

import atexit
import gc
import os
import shutil
from contextlib import closing
from pathlib import Path

import pytest

# torch and the project are imported by the fixtures that need them, not here: the xdist
# controller loads this file too and runs no test (importing them would cost it ~5 s up front)
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    # 2 workers on 2 cores: one thread each (and in every kedro/torchrun child, and in Kedro
    # sessions: runtime.threads null follows OMP_NUM_THREADS), else OpenMP oversubscribes
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# Tests that read the ci_chain fixture run in one xdist worker (--dist loadgroup), so the chain
# runs once; the same mark on a module whose module-scoped fixture is costly keeps it built once.
CI_CHAIN = pytest.mark.xdist_group("ci_chain")
# Tests that start several processes (torchrun, spawned ranks) share that worker, so that no two
# of them run at once (5 processes on 2 cores).
MULTI_PROCESS = CI_CHAIN
# A whole-journey check of minutes: `pytest -m slow` runs these (so does .ci/run), `pytest` not.
SLOW = pytest.mark.slow

# The slowest first (xdist hands tests out in collection order: --no-loadscope-reorder), so that
# the 2 workers finish together; no result depends on the order.
SLOWEST_FIRST = ("@ci_chain", "@viz", "@model_surgery",
                 "test_consistency.py", "test_errors.py", "test_pilot.py",
                 "@analysis_resolution")


# The interpreter's last garbage collection walks every object torch, timm and MLflow made (~1 s
# per worker while the run waits); objects are frozen at exit instead, after pytest's own collection
atexit.register(gc.freeze)


def pytest_configure(config: pytest.Config) -> None:
    # At exit pytest runs gc.collect() 5 times to surface exceptions raised in __del__; with
    # torch's heap each takes ~0.5 s in each worker. One is kept: the other four only matter for
    # garbage that the first leaves behind.
    try:
        from _pytest.unraisableexception import gc_collect_iterations_key
    except ImportError:  # moved in another pytest: keep its default
        return
    config.stash[gc_collect_iterations_key] = 1


def _slowness_rank(item: pytest.Item) -> int:
    mark = item.get_closest_marker("xdist_group")
    names = (f"@{mark.args[0]}" if mark and mark.args else "", item.path.name)
    return next((rank for rank, slow in enumerate(SLOWEST_FIRST) if slow in names),
                len(SLOWEST_FIRST))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_slowness_rank)  # stable: the rest keep their order


@pytest.fixture(scope="session")
def bundled_backbone():
    """The real ImageNet-pretrained EfficientNet-Lite0 (offline), at a small input size."""
    from ft_pipelines.core.models import load_backbone

    return load_backbone("bundled", input_size=64)


@pytest.fixture()
def fresh_backbone(bundled_backbone):
    import copy

    return copy.deepcopy(bundled_backbone)


@pytest.fixture(autouse=True)
def _seed():
    import torch

    torch.manual_seed(0)


@pytest.fixture(scope="session")
def mlflow_store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the first MLflow sqlite store of the session is copied once it is created."""
    return tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"


@pytest.fixture(scope="session", autouse=True)
def _new_mlflow_stores_are_copies(mlflow_store_template: Path):
    """Nearly every Kedro run in these tests opens a new MLflow sqlite store (data/ci/mlflow.db in
    a new project copy), and a new store runs MLflow's ~50 schema migrations: 3-7 s each on 2
    cores. The session's first store is created and migrated for real; every later one is an
    sqlite backup of it (same MLflow, same schema: what the migrations would have made)."""
    import sqlite3

    from mlflow.store.db import utils

    migrate = utils._initialize_tables

    def initialize_tables(engine) -> None:
        if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
            migrate(engine)
            return
        raw = engine.raw_connection()
        try:
            if mlflow_store_template.exists():
                with closing(sqlite3.connect(mlflow_store_template)) as template:
                    template.backup(raw.driver_connection)
            else:
                migrate(engine)
                with closing(sqlite3.connect(mlflow_store_template)) as template:
                    raw.driver_connection.backup(template)
        finally:
            raw.close()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(utils, "_initialize_tables", initialize_tables)
        yield


def empty_mlflow_store(template: Path) -> Path:
    """``mlflow_store_template``, created now if no store was opened yet."""
    if not template.exists():
        from mlflow import MlflowClient

        MlflowClient(f"sqlite:///{template.with_name('first.db')}").search_experiments()
    return template


@pytest.fixture(scope="session")
def ci_chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One whole ``kedro run --env ci`` (models registered in MLflow) typed as a user types it,
    in a throw-away project. Tests only read it: to run more on top, take ``ci_chain_copy``."""
    from tests.pipelines.conftest import kedro_cli
    from tests.project_copy import copy_project

    project = copy_project(tmp_path_factory.mktemp("ci_chain"))
    result = kedro_cli(project, "run", "--env", "ci", "--params=mlflow.register=true")
    assert result.returncode == 0, result.printed[-4000:]
    return project


def copy_ci_chain(ci_chain: Path, destination: Path, mlflow_store_template: Path) -> Path:
    """``ci_chain`` (project and outputs) copied to ``destination``, without the chain's MLflow
    runs, whose artifact folders are named in the original by absolute path: the copy has a
    new, empty store (as a first run would create it), so that Kedro in a new interpreter (a
    torchrun rank, a notebook kernel) skips the migrations too."""
    shutil.copytree(ci_chain, destination, ignore=shutil.ignore_patterns("mlflow.db", "mlruns"))
    shutil.copy(empty_mlflow_store(mlflow_store_template), destination / "data/ci/mlflow.db")
    return destination


@pytest.fixture()
def ci_chain_copy(ci_chain: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                  mlflow_store_template: Path) -> Path:
    """A private :func:`copy_ci_chain` to run Kedro on, bootstrapped and the working
    directory."""
    from kedro.framework.startup import bootstrap_project

    copy = copy_ci_chain(ci_chain, tmp_path / "ci_chain", mlflow_store_template)
    bootstrap_project(copy)
    monkeypatch.chdir(copy)
    return copy

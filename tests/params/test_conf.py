"""conf/ and the schemas cannot drift: conf/base states exactly the schema's defaults, every
environment validates, and every node receives its block typed with the same model."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing
from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

import ft_pipelines.pipelines
from ft_pipelines import settings
from ft_pipelines.params import Parameters, validate_parameters
from tests.project_copy import copy_project

# its module-scoped fixture is built once: all its tests in one xdist worker
pytestmark = pytest.mark.xdist_group("params_conf")


def load_parameters(project: Path, env: str) -> dict:
    args = {**settings.CONFIG_LOADER_ARGS, "default_run_env": env}
    return OmegaConfigLoader(str(project / "conf"), **args)["parameters"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(tmp_path_factory.mktemp("project"))  # an empty conf/local


def test_conf_base_states_exactly_the_schema_defaults(project):
    # conf/local is empty in the copy, so this is conf/base alone, globals resolved
    assert load_parameters(project, "local") == Parameters().model_dump(mode="json")


def test_conf_ci_is_valid(project):
    params = validate_parameters(load_parameters(project, "ci"))
    assert params.pruning.ratio == "auto"
    assert params.ingestion.decode_cache_dir == "data/ci/05_model_input/decoded"


def test_every_node_receives_its_block_typed_with_the_schema():
    blocks = Parameters.model_fields
    checked = 0
    stages = [m.name for m in pkgutil.iter_modules(ft_pipelines.pipelines.__path__)]
    nodes = [node for stage in stages for node in importlib.import_module(
        f"ft_pipelines.pipelines.{stage}.pipeline").create_pipeline().nodes]
    for node in nodes:
        hints = typing.get_type_hints(node.func)
        bound = node._inputs  # argument -> dataset where the node was given a dict
        pairs = ([(dataset, argument) for argument, dataset in bound.items()]
                 if isinstance(bound, dict) else
                 zip(node.inputs, inspect.signature(node.func).parameters, strict=True))
        for dataset, argument in pairs:
            if dataset.startswith("params:") and "." not in dataset:
                block = dataset.removeprefix("params:")
                assert hints[argument] is blocks[block].annotation, (node.name, dataset)
                checked += 1
    assert checked >= 10

"""``kedro viz build`` on a throw-away copy of the project: the static site builds and its
pipeline JSON shows every stage with its nodes; docs/render_dag.py draws from that JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.pipelines.conftest import CliResult, kedro_cli
from tests.project_copy import copy_project

# its module-scoped fixture is built once: all its tests in one xdist worker
pytestmark = pytest.mark.xdist_group("viz")

ROOT = Path(__file__).resolve().parents[1]

STAGE_NODES = {
    "data_ingestion": {"ingest_images"},
    "pretrained_backbone": {"rank_backbones", "load_backbone"},
    "similarity_analysis": {"analyse_similarity"},
    "strategy_selection": {"plan_finetuning", "select_by_pilot"},
    "backbone_surgery": {"perform_surgery"},
    "regularized_finetuning": {"compute_delta_attention", "finetune"},
    "channel_importance": {"compute_channel_importance"},
    "pruning": {"prune_and_finetune"},
    "export": {"export_finetuned_onnx", "export_pruned_onnx", "quantize_pruned_int8",
               "write_export_report"},
    "evaluation": {"evaluate_models", "write_report"},  # scores the exported files too
}
# registered but not in __default__ (it needs predict.path)
ON_DEMAND_NODES = {"predict": {"predict_images"}}


@pytest.fixture(scope="module")
def viz_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CliResult]:
    project = copy_project(tmp_path_factory.mktemp("viz_project"))
    return project / "build", kedro_cli(project, "viz", "build")


def load_json(path: Path) -> dict:
    assert path.is_file(), f"kedro viz build did not write {path}"
    return json.loads(path.read_text())


def task_names(graph: dict) -> set[str]:
    return {node["name"] for node in graph["nodes"] if node["type"] == "task"}


def test_build_succeeds(viz_build):
    build, result = viz_build
    output = result.printed
    assert result.returncode == 0, output[-3000:]
    assert "Success!" in output
    assert (build / "index.html").is_file()


def test_main_pipeline_has_every_node_of_every_stage(viz_build):
    graph = load_json(viz_build[0] / "api" / "main")
    assert graph["selected_pipeline"] == "__default__"
    assert task_names(graph) == set().union(*STAGE_NODES.values())
    by_name = {node["name"]: node for node in graph["nodes"]}
    for stage, names in STAGE_NODES.items():
        for name in names:
            assert by_name[name]["tags"] == [stage], name


def test_stages_are_listed_as_tags_and_pipelines(viz_build):
    graph = load_json(viz_build[0] / "api" / "main")
    assert {tag["id"] for tag in graph["tags"]} == set(STAGE_NODES) | set(ON_DEMAND_NODES)
    assert {p["id"] for p in graph["pipelines"]} == (set(STAGE_NODES) | set(ON_DEMAND_NODES)
                                                     | {"__default__"})


@pytest.mark.parametrize("stage", sorted(STAGE_NODES | ON_DEMAND_NODES))
def test_each_stage_pipeline_holds_exactly_its_nodes(viz_build, stage):
    graph = load_json(viz_build[0] / "api" / "pipelines" / stage)
    assert task_names(graph) == (STAGE_NODES | ON_DEMAND_NODES)[stage]


def test_edges_chain_the_stages(viz_build):
    graph = load_json(viz_build[0] / "api" / "main")
    ids = {node["id"]: node["name"] for node in graph["nodes"]}
    edges = {(ids[e["source"]], ids[e["target"]]) for e in graph["edges"]}
    # one dataset handed over at each stage boundary, in pipeline order
    for handover in [("ingest_images", "images"), ("images", "analyse_similarity"),
                     ("load_backbone", "pretrained_model"),
                     ("pretrained_model", "analyse_similarity"),
                     ("similarity_metrics", "plan_finetuning"),
                     ("finetune_plan", "perform_surgery"), ("surgered_model", "finetune"),
                     ("finetuned_model", "compute_channel_importance"),
                     ("channel_importance", "prune_and_finetune"),
                     ("pruned_model", "evaluate_models"),
                     ("evaluation_metrics", "write_report"),
                     ("pruned_model", "export_pruned_onnx"),
                     ("pruned_onnx", "quantize_pruned_int8")]:
        assert handover in edges


def test_render_dag_draws_the_build(viz_build, tmp_path):
    spec = importlib.util.spec_from_file_location("render_dag", ROOT / "docs" / "render_dag.py")
    render_dag = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render_dag)
    nodes, edges = render_dag.load_graph(viz_build[0] / "api" / "main")
    task_stage = render_dag.stage_of_tasks(nodes)
    assert render_dag.order_stages(task_stage, edges) == list(STAGE_NODES)
    output = render_dag.render(viz_build[0] / "api" / "main", tmp_path / "dag.png")
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

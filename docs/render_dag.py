"""Draw the project's pipeline DAG, stages left to right, from a kedro-viz static build.

Usage (from the project root):

    kedro viz build && python docs/render_dag.py build/api/main docs/dag.png

Each stage (the tag of its nodes) is a column pair: its tasks (boxes), then the datasets
they write (rounded labels), so data sits between the stage that makes it and the stages
that read it. Parameters are left out to keep the picture readable.
"""

from __future__ import annotations

import argparse
import json
import logging
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.text import Text  # noqa: E402

logger = logging.getLogger(__name__)

COLUMN_WIDTH = 1.0  # data units per sub-column (task or data)
LABEL_CHARS = 14  # wrap labels so they fit one column at README size
STAGE_COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52",
                 "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd"]


def load_graph(path: Path) -> tuple[dict[str, dict[str, Any]], list[tuple[str, str]]]:
    """Nodes by id (parameters dropped) and the edges between the kept nodes."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: run `kedro viz build` first (it writes build/api/main)"
        )
    graph = json.loads(path.read_text())
    nodes = {n["id"]: n for n in graph["nodes"] if n["type"] in ("task", "data")}
    edges = [(e["source"], e["target"]) for e in graph["edges"]
             if e["source"] in nodes and e["target"] in nodes]
    return nodes, edges


def stage_of_tasks(nodes: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Task id -> its stage: the task's only tag (every stage tags its nodes with its name)."""
    stages = {}
    for node_id, node in nodes.items():
        if node["type"] != "task":
            continue
        if len(node["tags"]) != 1:
            raise ValueError(f"task {node['name']!r} has tags {node['tags']}: expected one stage")
        stages[node_id] = node["tags"][0]
    return stages


def order_stages(task_stage: dict[str, str], edges: list[tuple[str, str]]) -> list[str]:
    """Stages sorted by how many stages lie upstream of them (longest path in stage graph)."""
    producer = {target: source for source, target in edges if source in task_stage}
    upstream: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        if target in task_stage and source in producer:
            before, after = task_stage[producer[source]], task_stage[target]
            if before != after:
                upstream[after].add(before)
    rank: dict[str, int] = {}

    def depth(stage: str, seen: tuple[str, ...] = ()) -> int:
        if stage in seen:
            raise ValueError(f"stages form a cycle: {' -> '.join((*seen, stage))}")
        if stage not in rank:
            rank[stage] = 1 + max((depth(s, (*seen, stage)) for s in upstream[stage]), default=-1)
        return rank[stage]

    return sorted(set(task_stage.values()), key=lambda s: (depth(s), s))


def place_nodes(nodes: dict[str, dict[str, Any]], edges: list[tuple[str, str]],
                task_stage: dict[str, str], stages: list[str]) -> dict[str, tuple[float, float]]:
    """(x, y) per node: tasks in their stage's left sub-column, data in the right one."""
    producer = {target: source for source, target in edges if source in task_stage}
    consumers: dict[str, list[str]] = defaultdict(list)
    for source, target in edges:
        consumers[source].append(target)
    stage_index = {stage: i for i, stage in enumerate(stages)}
    columns: dict[int, list[str]] = defaultdict(list)
    for node_id in _topological(nodes, edges):
        if node_id in task_stage:
            columns[2 * stage_index[task_stage[node_id]]].append(node_id)
        elif node_id in producer:
            columns[2 * stage_index[task_stage[producer[node_id]]] + 1].append(node_id)
        else:  # a free input: just left of its first reader
            first = min(stage_index[task_stage[c]] for c in consumers[node_id])
            columns[2 * first - 1].append(node_id)

    def reads_later(node_id: str) -> tuple[int, int]:
        readers = [stage_index[task_stage[c]] for c in consumers[node_id]]
        # data read downstream on top, final outputs (no reader) at the bottom
        return (not readers, -max(readers, default=0))

    positions = {}
    for column, members in columns.items():
        if column % 2:
            members.sort(key=reads_later)
        for row, node_id in enumerate(members):
            positions[node_id] = (column * COLUMN_WIDTH, (len(members) - 1) / 2 - row)
    return positions


def _topological(nodes: dict[str, Any], edges: list[tuple[str, str]]) -> list[str]:
    """Node ids in a topological order (Kahn), ties by name so the picture is stable."""
    indegree = {node_id: 0 for node_id in nodes}
    children: dict[str, list[str]] = defaultdict(list)
    for source, target in edges:
        indegree[target] += 1
        children[source].append(target)
    ready = sorted((i for i, d in indegree.items() if d == 0), key=lambda i: nodes[i]["name"])
    ordered = []
    while ready:
        node_id = ready.pop(0)
        ordered.append(node_id)
        for child in children[node_id]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
        ready.sort(key=lambda i: nodes[i]["name"])
    return ordered


def wrap(name: str) -> str:
    """Break a snake_case name after underscores into lines of at most LABEL_CHARS."""
    words = name.replace("_", "_\0").split("\0")
    return "\n".join(textwrap.wrap(" ".join(words), LABEL_CHARS, break_on_hyphens=False)
                     ).replace("_ ", "_")


def draw(nodes: dict[str, dict[str, Any]], edges: list[tuple[str, str]]) -> Figure:
    """The DAG as a Figure: stage bands with headers, node labels, arrows along edges."""
    task_stage = stage_of_tasks(nodes)
    stages = order_stages(task_stage, edges)
    positions = place_nodes(nodes, edges, task_stage, stages)
    rows = max(abs(y) for _, y in positions.values()) + 0.5
    fig = Figure(figsize=(16, 1.4 + 1.5 * rows), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_xlim(-0.6, 2 * len(stages) - 0.4)
    ax.set_ylim(-rows - 0.35, rows + 0.75)
    producer = {target: source for source, target in edges if source in task_stage}
    colour = {stage: STAGE_COLOURS[i % len(STAGE_COLOURS)] for i, stage in enumerate(stages)}
    for i, stage in enumerate(stages):
        ax.add_patch(Rectangle((2 * i - 0.5, -rows - 0.1), 2, 2 * rows + 0.85,
                               color=colour[stage], alpha=0.07, linewidth=0))
        ax.text(2 * i + 0.5, rows + 0.4, f"{i + 1}. {stage}", ha="center", va="center",
                fontsize=9.5, fontweight="bold", color=colour[stage])
    ax.text(-0.5, -rows - 0.22, "boxes: nodes (functions)    rounded: datasets    "
            "arrows: data flow    parameters omitted", fontsize=8, color="#555555", va="center")
    labels: dict[str, Text] = {}
    for node_id, (x, y) in positions.items():
        node = nodes[node_id]
        if node["type"] == "task":
            style = dict(boxstyle="square,pad=0.4", facecolor=colour[task_stage[node_id]],
                         edgecolor="none")
            text_colour, weight = "white", "bold"
        else:
            stage = task_stage.get(producer.get(node_id, ""), stages[0])
            style = dict(boxstyle="round,pad=0.35", facecolor="white",
                         edgecolor=colour[stage], linewidth=1.2)
            text_colour, weight = "#222222", "normal"
        labels[node_id] = ax.text(x, y, wrap(node["name"]), ha="center", va="center",
                                  fontsize=8.5, color=text_colour, fontweight=weight,
                                  bbox=style, zorder=3)
    for source, target in edges:
        _arrow(ax, labels[source], labels[target], positions[source], positions[target],
               colour[task_stage.get(source) or task_stage[target]])
    return fig


def _arrow(ax: Any, source: Text, target: Text, start: tuple[float, float],
           end: tuple[float, float], colour: str) -> None:
    """An arrow between two labels' boxes; backwards (right-to-left) edges bend more."""
    backwards = end[0] < start[0]
    ax.annotate("", xy=(1 if backwards else 0, 0.5), xycoords=target,
                xytext=(0 if backwards else 1, 0.5), textcoords=source,
                arrowprops=dict(arrowstyle="-|>", color=colour, alpha=0.55, linewidth=1.0,
                                shrinkA=2, shrinkB=2, mutation_scale=10,
                                connectionstyle=f"arc3,rad={0.35 if backwards else 0.08}"),
                zorder=2)


def render(build_json: Path, output: Path) -> Path:
    """Read the kedro-viz pipeline JSON and save the DAG picture; returns the output path."""
    nodes, edges = load_graph(build_json)
    fig = draw(nodes, edges)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, facecolor="white")
    logger.info("DAG with %d nodes and %d edges written to %s", len(nodes), len(edges), output)
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build_json", type=Path, nargs="?", default=Path("build/api/main"),
                        help="pipeline JSON written by `kedro viz build`")
    parser.add_argument("output", type=Path, nargs="?", default=Path("docs/dag.png"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    render(args.build_json, args.output)


if __name__ == "__main__":
    main()

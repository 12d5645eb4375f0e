"""The package's import graph: no cycle (module-level and function-level imports alike), core/
never imports Kedro, and nodes import core only through the sub-packages' ``__init__``."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "src" / "ft_pipelines"
PACKAGE = "ft_pipelines"


def module_name(path: Path) -> str:
    parts = (PACKAGE, *path.relative_to(PACKAGE_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE_ROOT.rglob("*.py")}


def imported_modules(path: Path) -> set[str]:
    """Project modules ``path`` imports anywhere in its body (``if TYPE_CHECKING`` included).

    ``from pkg import name`` counts as an import of ``pkg.name`` when that is a module, else of
    ``pkg`` (whose ``__init__`` runs)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
    return {name for name in found if name in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    graph = {name: imported_modules(path) for name, path in MODULES.items()}
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_core_never_imports_kedro():
    offenders = []
    for name, path in MODULES.items():
        if name.startswith(f"{PACKAGE}.core"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                offenders += [f"{name}: {n}" for n in names if n.split(".")[0] == "kedro"]
    assert not offenders, offenders


def test_nodes_import_core_only_through_sub_package_inits():
    core_packages = {n for n, p in MODULES.items()
                     if p.name == "__init__.py" and n.count(".") == 2 and ".core." in n}
    offenders = []
    for name, path in MODULES.items():
        if name.endswith(".nodes"):
            offenders += [f"{name} imports {target}" for target in imported_modules(path)
                          if ".core" in target and target not in core_packages]
    assert not offenders, offenders

"""The module graph: no import cycle among xscan's modules, lazy imports included; only the CLI at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "xscan"


def module_name(path: Path) -> str:
    return "xscan" if path.name == "__init__.py" else f"xscan.{path.stem}"


def imported_modules(path: Path) -> set[str]:
    """Every xscan module PATH imports, wherever the import statement is (in a function too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "xscan")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "xscan":
            for alias in node.names:  # `from xscan import run` names a module, `from xscan import __version__` does not
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if (PACKAGE / f"{alias.name}.py").exists() and node.module == "xscan" else node.module)
    return found - {module_name(path)}


def import_graph() -> dict[str, set[str]]:
    return {module_name(path): imported_modules(path) for path in sorted(PACKAGE.glob("*.py"))}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of GRAPH as a list of modules (first == last), or [] when there is none."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once fully explored
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = "done"
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_the_graph_sees_lazy_imports() -> None:
    graph = import_graph()
    assert "xscan.run" in graph["xscan.cli"]  # imported inside the score command only
    assert {"xscan.run", "xscan.scoring", "xscan.options"} <= graph["xscan"]  # the package's names, imported on first use


def test_no_import_cycle_among_xscan_modules() -> None:
    assert find_cycle(import_graph()) == []


@pytest.mark.parametrize("module", sorted(set(import_graph()) - {"xscan.cli"}))
def test_only_the_cli_imports_typer_and_nothing_imports_the_cli(module: str) -> None:
    path = PACKAGE / ("__init__.py" if module == "xscan" else f"{module.removeprefix('xscan.')}.py")
    assert "xscan.cli" not in imported_modules(path)
    names = {alias.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Import | ast.ImportFrom)
             for alias in node.names} | {node.module for node in ast.walk(ast.parse(path.read_text()))
                                         if isinstance(node, ast.ImportFrom) and node.module}
    assert not {name for name in names if name.split(".")[0] == "typer"}

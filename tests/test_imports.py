"""The module graph: no import cycle among xscan's modules (lazy imports included), and the stages layered one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "xscan"

# What each stage may import besides itself: data flows input -> model -> scoring -> reporting / explain,
# training beside scoring, site (calibrate, drift) on rows and labels, the CLI on top and imported by nothing.
# `about` (version, disclaimer), `errors` and `stats` (textbook statistics) sit below every stage.
LAYERS: dict[str, set[str]] = {
    "about": set(),
    "errors": set(),
    "stats": {"about", "errors"},
    "input": {"about", "errors"},
    "model": {"about", "errors", "stats", "input"},
    "scoring": {"about", "errors", "stats", "input", "model"},
    "training": {"about", "errors", "stats", "input", "model"},
    "explain": {"about", "errors", "stats", "input", "model", "scoring"},
    "reporting": {"about", "errors", "stats", "input", "model", "scoring", "explain"},  # the review page shows heatmaps
    "site": {"about", "errors", "stats", "input", "model", "scoring", "reporting"},
    # Results where a hospital reads them: studies from rows and headers, structured reports, heatmap images (the
    # heatmap explain draws), sending to a PACS; a file's patient as training finds it.
    "pacs": {"about", "errors", "stats", "input", "model", "scoring", "training", "reporting", "explain"},
    # The audit: results and reads, matched per file (reporting's labels) or per study (pacs' roll-up).
    "audit": {
        "about",
        "errors",
        "stats",
        "input",
        "model",
        "scoring",
        "training",
        "reporting",
        "site",
        "explain",
        "pacs",
    },
    "cli": {
        "about",
        "errors",
        "stats",
        "input",
        "model",
        "scoring",
        "training",
        "explain",
        "reporting",
        "site",
        "pacs",
        "audit",
        "package",
    },
    "package": {"about", "model", "scoring", "explain"},  # xscan/__init__.py: the public names, imported on first use
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_path(name: str) -> Path | None:
    base = PACKAGE.parent.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def stage(module: str) -> str:
    parts = module.split(".")
    return "package" if len(parts) == 1 else parts[1]


def imported_modules(path: Path) -> set[str]:
    """Every xscan module PATH imports, wherever the import statement is (in a function too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "xscan")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "xscan":
            for (
                alias
            ) in node.names:  # `from xscan.scoring import run` names a module, `from xscan import __version__` does not
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if module_path(submodule) else node.module)
    return found - {module_name(path)}


def import_graph() -> dict[str, set[str]]:
    return {module_name(path): imported_modules(path) for path in sorted(PACKAGE.rglob("*.py"))}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of GRAPH as a list of modules (first == last), or [] when there is none."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once fully explored
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = "done"
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    """Each import in GRAPH that goes against LAYERS, as 'importer -> imported'."""
    return sorted(
        f"{importer} -> {target}"
        for importer, targets in graph.items()
        for target in targets
        if stage(target) != stage(importer) and stage(target) not in LAYERS[stage(importer)]
    )


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_the_layer_check_finds_an_upward_import() -> None:
    graph = {"xscan.input.decode": {"xscan.model.card"}, "xscan.model.card": {"xscan.input.decode", "xscan.errors"}}
    assert layering_violations(graph) == ["xscan.input.decode -> xscan.model.card"]


def test_the_graph_walks_the_subpackages_and_sees_lazy_imports() -> None:
    graph = import_graph()
    assert {"xscan.input.dicom.image", "xscan.model.scorer", "xscan.scoring.run", "xscan.cli"} <= set(graph)
    assert "xscan.scoring.run" in {
        target for module, targets in graph.items() if stage(module) == "cli" for target in targets
    }
    assert {"xscan.scoring.run", "xscan.scoring.pipeline", "xscan.scoring.options"} <= graph[
        "xscan"
    ]  # imported on first use


def test_every_module_belongs_to_a_known_stage() -> None:
    assert {stage(module) for module in import_graph()} <= set(LAYERS)


def test_no_import_cycle_among_xscan_modules() -> None:
    assert find_cycle(import_graph()) == []


def test_stages_import_only_the_stages_below_them() -> None:
    assert layering_violations(import_graph()) == []


@pytest.mark.parametrize("module", sorted(module for module in import_graph() if stage(module) != "cli"))
def test_only_the_cli_imports_typer_and_nothing_imports_the_cli(module: str) -> None:
    path = module_path(module)
    assert path is not None
    assert not {target for target in imported_modules(path) if stage(target) == "cli"}
    tree = ast.parse(path.read_text())
    names = {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom) for alias in node.names
    }
    names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {name for name in names if name.split(".")[0] == "typer"}

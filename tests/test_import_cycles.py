"""The package's modules import each other without cycles: every import counts, module-level, inside functions and
under ``TYPE_CHECKING`` (a lazy import hides a cycle from Python, not from the reader)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import PROJECT_DIR

PACKAGE_ROOT = PROJECT_DIR / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """``{module: the package's modules it imports}``; ``from a.b import c`` is ``a.b.c`` when that is a module."""
    modules = {_module_name(path): path for path in (PACKAGE_ROOT / "demobank").rglob("*.py")
               if "migrations" not in path.parts}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(f"{target}."):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_lazy_and_type_checking_imports() -> None:
    graph = import_graph()
    # A function-level import (tasks -> db.engine) and a TYPE_CHECKING one (report_outbox -> run_report).
    assert "demobank.db.engine" in graph["demobank.events.tasks"]
    assert "demobank.data_factory.run_report" in graph["demobank.data_factory.report_outbox"]


def test_cycles_are_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_package_has_no_import_cycle() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles (move what both sides need into a module of its own): " + "; ".join(
        " <-> ".join(component) for component in found)


def test_the_events_layer_knows_no_connect_workflow() -> None:
    """Events deliver to DAGs without knowing them: Connect registers its alert's conf (an entry point)."""
    graph = import_graph()
    leaks = {module: sorted(t for t in targets if t.startswith("demobank.connect"))
             for module, targets in graph.items() if module.startswith("demobank.events")}
    assert not {module: targets for module, targets in leaks.items() if targets}

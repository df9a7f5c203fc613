"""No module of edge/ imports a module that imports it back, directly or around a longer circle.

A circle works until someone moves an import to the top of a file, and it hides which module is
the lower layer. Lazy imports inside functions are counted too: they hide a circle from Python,
not from the next reader. Imports under ``if TYPE_CHECKING:`` are not imports at run time and are
left out, so annotations may name a higher layer's types.
"""

from __future__ import annotations

import ast
from pathlib import Path

EDGE = Path(__file__).resolve().parent.parent / "edge"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _run_time_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node, at any depth (functions included), except the bodies of ``if TYPE_CHECKING:``."""
    nodes: list[ast.AST] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        nodes.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
    return nodes


def edge_imports(path: Path, modules: set[str]) -> set[str]:
    """The edge modules that ``path`` imports anywhere in its code (``edge`` itself for ``edge/__init__.py``)."""
    found: set[str] = set()
    for node in _run_time_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in modules:
            found.add(node.module)
            if node.module == "edge":  # `from edge import bundle` imports the module edge.bundle too
                found.update(f"edge.{alias.name}" for alias in node.names)
    return found & modules


def import_graph() -> dict[str, set[str]]:
    """Module name -> the edge modules it imports."""
    paths = {("edge" if p.stem == "__init__" else f"edge.{p.stem}"): p for p in EDGE.glob("*.py")}
    modules = set(paths)
    return {name: edge_imports(path, modules) - {name} for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle as ``[a, b, ..., a]``, or None; depth-first with colours (white, grey on the path, black done)."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycles_among_edge_modules():
    graph = import_graph()
    assert len(graph) > 40 and "edge.runtime" in graph["edge.evaluate"]  # the parser sees real imports
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_checker_finds_a_circle_hidden_in_a_function(tmp_path):
    """The test above can fail: a lazy import back is a circle."""
    (tmp_path / "a.py").write_text("import edge.b\n")
    (tmp_path / "b.py").write_text("def f():\n    from edge.a import x\n")
    (tmp_path / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from edge import a\n")
    modules = {"edge.a", "edge.b", "edge.c"}
    graph = {f"edge.{n}": edge_imports(tmp_path / f"{n}.py", modules) for n in "abc"}
    assert graph == {"edge.a": {"edge.b"}, "edge.b": {"edge.a"}, "edge.c": set()}
    assert find_cycle(graph) == ["edge.a", "edge.b", "edge.a"]


def test_is_image_does_not_pull_in_the_runtime():
    """Capture sources, the trainer's ingest and the converter's calibration ask only whether a path is an image."""
    graph = import_graph()
    assert graph["edge.images"] == set()
    assert "edge.evaluate" not in graph["edge.sources"]

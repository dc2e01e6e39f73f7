"""No two modules of Tandem import each other, directly or around a loop.

A cycle works only as long as one side imports lazily or late, and breaks on an innocent
reordering (issue 19: ``backtest/reconcile/render.py`` and ``report.py`` imported each other).
The graph is read from the source (every ``import``, at any depth, except those under
``if TYPE_CHECKING:``, which never run), so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

PACKAGES = ("core", "backtest", "daemon")


def _module_name(path: Path) -> str:
    """The installed name: the folders core/, backtest/, daemon/ ship as tandem.*."""
    parts = ["tandem", *path.relative_to(REPO_ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import not under ``if TYPE_CHECKING:``."""
    found: list[tuple[str, list[str]]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [a.name for a in node.names]))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (REPO_ROOT / pkg).rglob("*.py")]
    modules = {_module_name(p) for p in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        edges: set[str] = set()
        for module, names in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            # `from pkg import sub` imports the submodule; `from mod import name` the module.
            subs = {f"{module}.{n}" for n in names} & modules
            edges |= subs or ({module} & modules)
        graph[_module_name(path)] = edges - {_module_name(path)}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_cycle_detector_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_reconcile_render_and_report_do_not_import_each_other() -> None:
    g = _graph()
    assert "tandem.backtest.reconcile.render" in g["tandem.backtest.reconcile.report"]
    assert "tandem.backtest.reconcile.report" not in g["tandem.backtest.reconcile.render"]


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []

"""The package's import graph has no cycle (issue 13, part 1).

Every ``import cifar_lib...`` / ``from cifar_lib... import`` in a module,
at module level or inside a function, is an edge from that module to the
one it names (``from cifar_lib.x import y`` names ``cifar_lib.x.y`` when
that is a module, else ``cifar_lib.x``). A parent package's ``__init__``,
which Python runs first, is not counted as an edge: it is where a package
gathers its parts and never needs what imports it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "cifar_lib"


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(node: ast.ImportFrom, here: str, is_pkg: bool) -> str:
    if not node.level:
        return node.module or ""
    base = here.split(".")
    base = base if is_pkg else base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path, modules: set[str]) -> set[str]:
    """The package modules ``name`` imports anywhere in its file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            mod = _resolve(node, name, path.name == "__init__.py")
            subs = {f"{mod}.{a.name}" for a in node.names}
            found |= (subs & modules) or {mod}
            found |= {mod} if subs - modules else set()
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_reports_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_graph_sees_function_level_imports():
    g = import_graph()
    assert "cifar_lib.studies" in g["cifar_lib.plan"]        # inside load_studies()
    assert "cifar_lib.slbi" in g["cifar_lib.engine"]


def test_registry_is_a_leaf():
    assert import_graph()["cifar_lib.registry"] == set()


def test_store_needs_only_the_atomic_writer():
    """The one place that names, reads and writes results depends on nothing
    that trains or draws."""
    assert import_graph()["cifar_lib.store"] == {"cifar_lib.fsutil"}


@pytest.mark.parametrize("module", ["cifar_lib.experiments", "cifar_lib.report",
                                    "cifar_lib.optim", "cifar_lib.store",
                                    "cifar_lib.migrate", "cifar_lib.viz"])
def test_libraries_do_not_import_studies(module):
    graph = import_graph()
    seen, todo = set(), [module]
    while todo:  # everything the module reaches
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    assert not {m for m in seen if m.startswith("cifar_lib.studies")}, seen


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)

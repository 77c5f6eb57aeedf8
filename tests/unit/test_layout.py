"""The folder graph read from the code's own imports: ksplice_pkg's subpackages (and each
top-level module, a folder of one) are its nodes, and a module of one importing a module of
another (at any level, lazy imports in functions included) is an edge. No set of folders may
reach each other in a circle, and distro/, which gets packages from outside, sits below the
pipeline that uses it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ksplice_pkg"
# What distro/ may use: the target's description and the helpers every layer shares; nothing of
# the pipeline or the commands above it.
DISTRO_MAY_IMPORT = {
    "ksplice_pkg",
    "distro",
    "target",
    "errors",
    "log",
    "run",
    "fsutil",
    "unpack",
    "cache",
    "paths",
    "manifest",
}


def _folder(module: str) -> str:
    """The node of ksplice_pkg.x.y: the subpackage x, or the top-level module x itself (a
    folder of one); the package's own __init__ is "ksplice_pkg"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every ksplice_pkg module `path` imports, wherever the import statement stands."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            # `from ksplice_pkg import cache` names a module, not a name of the package.
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] == "ksplice_pkg" and _exists(m)}


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def module_imports() -> dict[str, set[str]]:
    return {_module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def folder_graph() -> dict[str, set[str]]:
    """folder -> the folders its modules import (itself left out)."""
    graph: dict[str, set[str]] = {}
    for module, imported in module_imports().items():
        folder = _folder(module)
        graph.setdefault(folder, set()).update(
            other for other in map(_folder, imported) if other != folder
        )
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
                if top == node:
                    break
            components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_strongly_connected_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert sorted(map(sorted, strongly_connected(graph))) == [["a", "b", "c"], ["d"]]


def test_lazy_imports_are_edges() -> None:
    # The rule would be empty if an import inside a function were not seen.
    source = PACKAGE / "cli.py"
    assert "ksplice_pkg.create" in imports_of(source)


def test_no_folders_import_each_other_in_a_circle() -> None:
    tangled = [sorted(c) for c in strongly_connected(folder_graph()) if len(c) > 1]
    assert not tangled, f"folders that import each other in a circle: {tangled}"


def test_no_lazy_import_hides_a_module_cycle() -> None:
    # An import inside a function is an arrow like any other: with every import counted, no
    # module reaches itself.
    graph = {module: imported - {module} for module, imported in module_imports().items()}
    tangled = [sorted(c) for c in strongly_connected(graph) if len(c) > 1]
    assert not tangled, f"modules that import each other in a circle: {tangled}"


def test_distro_imports_nothing_above_it() -> None:
    above = sorted(
        f"{module} imports {imported}"
        for module, modules in module_imports().items()
        if _folder(module) == "distro"
        for imported in modules
        if _folder(imported) not in DISTRO_MAY_IMPORT
    )
    assert not above, "\n".join(above)

"""No import cycles: the graph of the package's modules, with every import counted (at the top,
inside functions and under `TYPE_CHECKING`), has no cycle. A cycle hidden by a deferred import
still ties two modules into one: neither can be read, tested or moved without the other."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from tests.test_layers import PACKAGE, imported_modules, package_modules


def import_graph(paths: Iterable[Path], root: Path = PACKAGE.parent) -> dict[str, set[str]]:
    """Each module's name -> the package's modules it imports (names that are not modules,
    such as `purejaxppo.config.Hyperparams`, are dropped)."""
    names = {module_name_under(path, root): path for path in paths}
    return {
        name: {imported for imported in imported_modules(path) if imported in names} - {name}
        for name, path in names.items()
    }


def module_name_under(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def reachable(graph: Mapping[str, set[str]], start: str) -> set[str]:
    """Every module that `start` imports, directly or through others."""
    seen: set[str] = set()
    todo = list(graph.get(start, ()))
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo += graph.get(node, ())
    return seen


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other (through any path), each sorted."""
    reach = {node: reachable(graph, node) for node in graph}
    groups = {
        tuple(sorted({node} | {other for other in reach[node] if node in reach[other]}))
        for node in graph
        if node in reach[node]
    }
    return [list(group) for group in sorted(groups)]


def test_the_package_has_no_import_cycle():
    graph = import_graph(package_modules())
    assert len(graph) > 50  # every module was walked
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_a_cycle_through_a_deferred_and_a_type_only_import_is_found(tmp_path):
    """The check can fail: two modules that import each other, one only inside a function and
    one only under `TYPE_CHECKING`, are one cycle; a third module importing them is not in it."""
    package = tmp_path / "purejaxppo"
    package.mkdir()
    (package / "a.py").write_text("def f():\n    from purejaxppo.b import g\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from purejaxppo.a import f\n"
    )
    (package / "c.py").write_text("import purejaxppo.a\nimport purejaxppo.b\n")
    graph = import_graph(sorted(package.glob("*.py")), root=tmp_path)
    assert graph["purejaxppo.c"] == {"purejaxppo.a", "purejaxppo.b"}
    assert cycles(graph) == [["purejaxppo.a", "purejaxppo.b"]]

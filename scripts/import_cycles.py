"""List import cycles among seewhy's modules, counting every import statement.

An import inside a function is counted like one at the top of the module: it
only runs later, and deferring it hides a cycle rather than removing it (the
two modules still need each other). The exceptions are named in ``DEFERRED``,
each with the reason the import waits. Imports under ``if TYPE_CHECKING:``
never run and are not counted, nor is ``from . import submodule`` counted as
an import of the package being initialised: it only loads the submodule.

A cycle is reported as its strongly connected group of modules with the
imports that tie it, file and line, so the edge to cut is in the output.
Exits 1 when there is a cycle.  Run: python scripts/import_cycles.py
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src"

#: Imports deliberately made late, (importer, imported) -> why. Each one would close a
#: cycle if it ran at import time; only imports that keep ``import seewhy`` light or
#: load plug-ins belong here, never one that hides two modules needing each other.
DEFERRED: Mapping[tuple[str, str], str] = {
    ("seewhy.registry", "seewhy.methods"): (
        "plug-in loading: the built-in methods register themselves (and so import the "
        "registry); the registry imports them on its first lookup"
    ),
    ("seewhy.explanation", "seewhy.viz"): (
        "plotting: an Explanation draws itself through viz (PIL, matplotlib) only when a "
        "picture is asked for"
    ),
    ("seewhy.explanation", "seewhy.notebook"): (
        "plotting: an Explanation's repr and Jupyter display are notebook.py's, which renders "
        "PNGs; loaded on first display"
    ),
    ("seewhy.metrics.sanity.result", "seewhy.metrics.sanity.plots"): (
        "plotting: SanityResult.figure draws through plots.py (matplotlib) only when asked"
    ),
    ("seewhy.targets", "seewhy.cli.target_text"): (
        "deprecated alias: seewhy.targets.parse forwards to the command line's parser for one "
        "release and is removed with this entry"
    ),
}


@dataclass(frozen=True)
class Edge:
    """One import of a seewhy module by another, where it is written."""

    importer: str
    imported: str
    line: int
    deferred: bool  # inside a function (or a class body's method)

    def __str__(self) -> str:
        where = "in a function" if self.deferred else "at module level"
        return f"{self.importer} -> {self.imported} (line {self.line}, {where})"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` (they never run)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skipped


def _in_functions(tree: ast.Module) -> set[int]:
    """ids of the nodes inside a function body (imports that run late)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inside.update(id(n) for n in ast.walk(node) if n is not node)
    return inside


def _imported(
    node: ast.Import | ast.ImportFrom, name: str, package: str, known: set[str]
) -> set[str]:
    """The seewhy modules one import statement loads."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    base = node.module or ""
    if node.level:
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*anchor, base] if base else anchor)
    names = {f"{base}.{alias.name}" for alias in node.names}
    found = set(names)
    # "from . import sibling" needs the package only when a name is not a module
    if not (name.startswith(base + ".") and names <= known):
        found.add(base)
    return found


def imports(path: Path, name: str, known: set[str]) -> Iterator[Edge]:
    """Every import of another seewhy module in ``path``, wherever it is written."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    skipped, late = _type_checking_only(tree), _in_functions(tree)
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in skipped:
            continue
        for imported in sorted(_imported(node, name, package, known)):
            if imported in known and imported != name:
                yield Edge(name, imported, node.lineno, id(node) in late)


def import_graph(root: Path = ROOT) -> dict[str, list[Edge]]:
    """Each module under ``root`` -> its imports of the other modules there."""
    paths = {module_name(p, root): p for p in root.rglob("*.py")}
    known = set(paths)
    return {name: list(imports(path, name, known)) for name, path in sorted(paths.items())}


def cycles(graph: Mapping[str, list[Edge]]) -> list[list[Edge]]:
    """The imports inside each group of modules that import each other (Tarjan's SCCs),
    leaving out the ``DEFERRED`` ones."""
    follow = {
        name: sorted({e.imported for e in edges if (e.importer, e.imported) not in DEFERRED})
        for name, edges in graph.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in follow[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    sys.setrecursionlimit(10_000)
    for name in follow:
        if name not in index:
            visit(name)
    return [
        [
            e
            for m in sorted(group)
            for e in graph[m]
            if e.imported in group and (e.importer, e.imported) not in DEFERRED
        ]
        for group in groups
    ]


def stale_exceptions(graph: Mapping[str, list[Edge]]) -> list[tuple[str, str]]:
    """``DEFERRED`` entries no import matches any more (a moved module, a fixed cycle)."""
    present = {(e.importer, e.imported) for edges in graph.values() for e in edges}
    return [pair for pair in DEFERRED if pair not in present]


def main() -> int:
    graph = import_graph()
    found = cycles(graph)
    for group in found:
        modules = sorted({e.importer for e in group})
        print(f"cycle among {', '.join(modules)}:")
        for edge in group:
            print(f"    {edge}")
    stale = stale_exceptions(graph)
    for importer, imported in stale:
        print(f"DEFERRED lists {importer} -> {imported}, which no longer imports it")
    print(f"{len(found)} import cycle(s) among {len(graph)} modules")
    return 1 if found or stale else 0


if __name__ == "__main__":
    raise SystemExit(main())

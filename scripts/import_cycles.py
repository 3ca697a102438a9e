"""List import cycles among seewhy's modules, counting module-level imports only.

Imports inside functions and under ``if TYPE_CHECKING:`` are not counted:
they run late or never, so they cannot make a cycle at import time. Nor is
``from . import submodule`` counted as an import of the package being
initialised: it only loads the submodule.
Exits 1 when there is a cycle.  Run: python scripts/import_cycles.py
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path, name: str, known: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = {f"{base}.{alias.name}" for alias in node.names}
            found.update(names)
            # "from . import sibling" needs the package only when a name is not a module
            if not (name.startswith(base + ".") and names <= known):
                found.add(base)
    return {m for m in found if m in known and m != name}


def main() -> int:
    paths = {module_name(p): p for p in ROOT.rglob("*.py")}
    known = set(paths)
    graph = {name: top_level_imports(path, name, known) for name, path in paths.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    sys.setrecursionlimit(10_000)
    for name in sorted(graph):
        if name not in state:
            visit(name)
    for cycle in cycles:
        print(" -> ".join(cycle))
    print(f"{len(cycles)} import cycle(s) among {len(graph)} modules")
    return 1 if cycles else 0


if __name__ == "__main__":
    raise SystemExit(main())

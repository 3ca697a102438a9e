"""The shape of the codebase that the redesign set, kept by tests: small modules, no
import cycle, frameworks only behind the backends."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "seewhy"
SCRIPTS = ROOT / "scripts"
FRAMEWORKS = {
    "torch",
    "torchvision",
    "tensorflow",
    "keras",
    "jax",
    "tf_keras",
    "timm",
    "lightning",
    "pytorch_lightning",
    "onnxruntime",
}
# modules that are framework code by their nature: model definitions, callbacks, training
FRAMEWORK_HOMES = (
    "backends/",
    "zoo/",
    "synthetic/",
    "keras.py",
    "lightning.py",
    "demo/",
    "vlm/",
    "detection/",
)


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_source_file_is_over_500_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= 500, f"{path.relative_to(SRC)} has {lines} lines"


def _import_checker() -> Any:
    """``scripts/import_cycles.py`` as a module: the graph of every import statement."""
    spec = importlib.util.spec_from_file_location("import_cycles", SCRIPTS / "import_cycles.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_no_import_cycle_even_through_imports_inside_functions() -> None:
    """A deferred import hides a cycle, it does not remove it: every import statement
    counts, except the late imports ``DEFERRED`` names with their reason."""
    checker = _import_checker()
    graph = checker.import_graph()
    found = ["; ".join(str(edge) for edge in group) for group in checker.cycles(graph)]
    assert found == [], "\n".join(found)
    assert checker.stale_exceptions(graph) == []
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "import_cycles.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "0 import cycle(s)" in done.stdout, done.stdout + done.stderr


def test_a_cycle_hidden_in_a_function_is_found(tmp_path: Path) -> None:
    """The accident the cycle test exists for: ``a`` imports ``b`` at the top, ``b``
    imports ``a`` inside a function, and Python never complains."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from . import a as never_run\n"
        "def late():\n    from .a import thing\n    return thing\n"
    )
    checker = _import_checker()
    groups = checker.cycles(checker.import_graph(tmp_path))
    assert [[str(e) for e in group] for group in groups] == [
        [
            "pkg.a -> pkg.b (line 1, at module level)",
            "pkg.b -> pkg.a (line 5, in a function)",
        ]
    ]


# Who may import seewhy.api or seewhy.explainer (Explainer, explain): the entry points that
# drive it (fnmatch patterns, each with its reason). What sits below it (methods, backends,
# the metrics' cases, targets, maps, inputs) is handed what it needs, so the orchestration
# can change without them and they never import their own caller.
API_CALLERS: dict[str, str] = {
    "seewhy": "the public facade re-exports it",
    "seewhy.api": "the one-call functions build an Explainer",
    "seewhy.audit*": "the audit explains a data set",
    "seewhy.cli*": "the commands explain",
    "seewhy.demo*": "the demos explain",
    "seewhy._training_panels": "the training callbacks explain at logging points",
    "seewhy.metrics.sanity.cascade": "a sanity check explains again with randomised copies",
}


def test_only_entry_points_import_the_explainer() -> None:
    graph = _import_checker().import_graph()
    callers = {
        str(edge)
        for edges in graph.values()
        for edge in edges
        if edge.imported in ("seewhy.api", "seewhy.explainer")
        and not any(fnmatch(edge.importer, pattern) for pattern in API_CALLERS)
    }
    assert callers == set()


def _framework_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found & FRAMEWORKS


def test_frameworks_are_imported_only_behind_the_backends() -> None:
    offenders = {
        str(path.relative_to(SRC)): sorted(_framework_imports(path))
        for path in _sources()
        if not str(path.relative_to(SRC)).startswith(FRAMEWORK_HOMES) and _framework_imports(path)
    }
    assert not offenders, offenders


def test_the_command_line_uses_only_the_public_api() -> None:
    private = {}
    for path in sorted((SRC / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = node.module if not node.level else f"{'.' * node.level}{node.module}"
                inside_cli = node.level == 1
                if not inside_cli and any(
                    part in module for part in ("backends", "_kit", "methods.", "runner")
                ):
                    private[path.name] = module
    assert not private, private


def test_warnings_go_through_warn_user() -> None:
    """A fixed stacklevel is right on one path into seewhy only; ``_kit.warn.warn_user``
    names the user's line on all of them."""
    offenders = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if path != SRC / "_kit" / "warn.py" and "warnings.warn(" in path.read_text()
    ]
    assert offenders == []

"""The shape of the codebase that the redesign set, kept by tests: small modules, no
import cycle, frameworks only behind the backends."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "seewhy"
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
FRAMEWORK_HOMES = ("backends/", "zoo/", "synthetic/", "keras.py", "lightning.py", "demo.py")


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_source_file_is_over_500_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= 500, f"{path.relative_to(SRC)} has {lines} lines"


def test_no_import_cycle_at_module_level() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "import_cycles.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 import cycle(s)" in done.stdout


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

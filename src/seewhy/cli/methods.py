"""``seewhy methods``: every registered method in one line; ``seewhy methods NAME``: its settings.

A method's settings are read from the method itself: the names, types and
defaults from its ``__init__``'s signature, each one line from the
``Parameters`` section of its docstring (numpydoc, along its bases), and what
it needs of a model from its ``requires`` (capability protocols), so a plug-in
method is listed like a built-in one.
"""

from __future__ import annotations

import argparse
import inspect
import re
from typing import TYPE_CHECKING, Any

from ..terminal import printable
from ._common import EXIT_OK
from .settings import describe, setting_types

if TYPE_CHECKING:
    from seewhy import Method

__all__ = ["HELP", "add_methods_arguments", "methods_command", "setting_lines"]

HELP = "list the explanation methods, or one method's settings"


def add_methods_arguments(p: argparse.ArgumentParser) -> None:
    """``seewhy methods [NAME]``."""
    p.add_argument(
        "name",
        nargs="?",
        help="a method: list its settings (for --set NAME=VALUE) and what it needs of a model",
    )


def methods_command(args: argparse.Namespace) -> int:
    """Print ``name  summary`` for each method, sorted by name; or one method's settings."""
    import seewhy

    if args.name is not None:
        for line in method_page(seewhy.registry.get(args.name)):
            print(printable(line))  # a plug-in names itself
        return EXIT_OK
    for name in seewhy.methods():
        print(printable(f"{name:<16} {_summary(seewhy.registry.get(name))}"))
    return EXIT_OK


def _summary(method: type[Method]) -> str:
    doc = (method.__doc__ or "").strip().splitlines()
    return doc[0] if doc else ""


def method_page(method: type[Method]) -> list[str]:
    """What ``seewhy methods NAME`` prints: the summary, what it needs, one line per setting."""
    lines = [f"{method.name}: {_summary(method)}"]
    lines += ["needs of a model:", *(f"  {need}" for need in _requirements(method))]
    settings = setting_lines(method)
    if not settings:
        return [*lines, "settings: none"]
    lines.append("settings (--set NAME=VALUE on explain, evaluate, sanity and audit):")
    width = max(len(name) for name, *_ in settings)
    for name, kind, default, said in settings:
        lines.append(f"  {name:<{width}}  {kind} [default: {default}]")
        lines.append(f"  {'':<{width}}  {said}")
    return lines


def setting_lines(method: type[Method]) -> list[tuple[str, str, str, str]]:
    """(name, what it takes, default, one line) per setting, in the signature's order."""
    described = _documented(method)
    hints = setting_types(method)
    return [
        (name, describe(hints[name]) or "(Python only)", _shown(default), described.get(name, ""))
        for name, default in method.defaults().items()
    ]


def _shown(default: Any) -> str:
    if default is None:
        return "none"
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)


#: A numpydoc parameter line: ``name : type`` or ``name`` alone.
_ENTRY = re.compile(r"^(\w+)(\s*:.*)?$")


def _documented(method: type[Method]) -> dict[str, str]:
    """Each setting's first line in the ``Parameters`` sections along the class's bases."""
    found: dict[str, str] = {}
    for cls in type.mro(method):
        for name, said in _parameters(inspect.getdoc(cls) or "").items():
            found.setdefault(name, said)
    return found


def _parameters(doc: str) -> dict[str, str]:
    """``name -> first description line`` of a numpydoc ``Parameters`` section."""
    lines = doc.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Parameters") + 2
    except StopIteration:
        return {}
    found: dict[str, str] = {}
    for i in range(start, len(lines)):
        following = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if set(following) == {"-"}:
            break  # this line is the next section's header (Returns, Examples, ...)
        entry = _ENTRY.match(lines[i]) if not lines[i].startswith(" ") else None
        if entry:
            found[entry.group(1)] = following
    return found


def _requirements(method: type[Method]) -> list[str]:
    """What the method needs of a model: its ``requires``, each capability with its first line."""
    return sorted(_capability_words(c) for c in method.requires)


def _capability_words(capability: type) -> str:
    doc = (capability.__doc__ or "").strip().splitlines()
    said = doc[0].rstrip(".") if doc else ""
    return f"{capability.__name__}: {said[:1].lower()}{said[1:]}" if said else capability.__name__

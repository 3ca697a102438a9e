"""``seewhy methods``: every registered method with the first line of its docstring."""

from __future__ import annotations

import argparse

from ..terminal import printable
from ._common import EXIT_OK

__all__ = ["HELP", "add_methods_arguments", "methods_command"]

HELP = "list the explanation methods"


def add_methods_arguments(p: argparse.ArgumentParser) -> None:
    """``seewhy methods`` takes no options."""


def methods_command(args: argparse.Namespace) -> int:
    """Print ``name  summary`` for each method, sorted by name."""
    import seewhy

    for name in seewhy.methods():
        doc = (seewhy.registry.get(name).__doc__ or "").strip().splitlines()
        print(printable(f"{name:<16} {doc[0] if doc else ''}"))  # a plug-in names itself
    return EXIT_OK

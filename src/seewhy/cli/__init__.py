"""The ``seewhy`` command: one module per sub-command, options shared through :mod:`.options`.

Uses only the public API. Errors are one line on stderr and a non-zero exit
code (1 error, 2 bad command line, 3 some images unreadable, 130
interrupted); a bad image in a folder is reported and the rest are still
explained. Everything printed passes :mod:`seewhy.terminal`, so a class or
file name cannot send the terminal an escape sequence. Each command module
holds ``add_<name>_arguments(parser)`` and ``<name>_command(args) -> exit code``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import NoReturn

from .. import __version__
from ..adapters import AdaptedModelNote
from ..errors import (
    ConstantMapWarning,
    FewSuperpixelsWarning,
    InputGuessWarning,
    NonFiniteScoresWarning,
    SeewhyError,
    SkippedInputWarning,
)
from ..terminal import one_line
from . import audit, demo, evaluate, explain, layers, methods, sanity
from ._common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE

__all__ = ["main", "run"]

Command = Callable[[argparse.Namespace], int]

#: name -> (help, add its arguments, run it), in the order ``seewhy --help`` lists them.
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Command]] = {
    "explain": (explain.HELP, explain.add_explain_arguments, explain.explain_command),
    "layers": (layers.HELP, layers.add_layers_arguments, layers.layers_command),
    "methods": (methods.HELP, methods.add_methods_arguments, methods.methods_command),
    "audit": (audit.HELP, audit.add_audit_arguments, audit.audit_command),
    "evaluate": (evaluate.HELP, evaluate.add_evaluate_arguments, evaluate.evaluate_command),
    "sanity": (sanity.HELP, sanity.add_sanity_arguments, sanity.sanity_command),
    "demo": (demo.HELP, demo.add_demo_arguments, demo.demo_command),
}


class _Parser(argparse.ArgumentParser):
    """argparse, with its error line escaped: it quotes what was typed (or a file's name)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="seewhy", description="See where an image model looks when it decides.")
    parser.add_argument("--version", action="version", version=f"seewhy {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, _) in _COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text))
    return parser


def run(command: Command, args: argparse.Namespace) -> int:
    """Run a parsed command, turning every error into one line on stderr and an exit code.

    ``args.debug`` (when the parser has ``--debug``) lets tracebacks through.
    """
    debug = bool(getattr(args, "debug", False))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SkippedInputWarning)  # the CLI lists them itself
            warnings.simplefilter("ignore", NonFiniteScoresWarning)  # explain and audit report them
            warnings.showwarning = _one_line_notes(warnings.showwarning)
            return command(args)
    except SeewhyError as exc:
        if debug:
            raise
        print(f"seewhy: error: {_said(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("seewhy: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if debug:
            raise
        # a framework's message may run over many lines (notes, a C++ stack): one line here
        said = f"{one_line(type(exc).__name__)}: {_said(exc)}"
        print(f"seewhy: error: {said} (run with --debug for details)", file=sys.stderr)
        return EXIT_ERROR


def _said(exc: BaseException) -> str:
    """An exception's message as one printable line, even when its ``__str__`` fails."""
    try:
        text = str(exc)
    except Exception:  # a framework's exception whose message cannot be built
        text = "(the error's message could not be read)"
    return one_line(text)


#: Warnings the command line says in one line each (once): what was guessed, what shows nothing,
#: which part of a vision-language model is explained.
_NOTES = (InputGuessWarning, ConstantMapWarning, FewSuperpixelsWarning, AdaptedModelNote)


def _one_line_notes(show: Callable[..., None]) -> Callable[..., None]:
    """``showwarning`` that prints :data:`_NOTES` as ``seewhy: note: ...``, each once.

    Every other warning goes to Python's ``show`` as before, its text made one
    printable line first: a warning may quote a class or layer name.
    """
    said: set[str] = set()

    def note(message: Warning | str, category: type[Warning], *args: object, **kw: object) -> None:
        text = one_line(message)
        if not issubclass(category, _NOTES):
            show(text, category, *args, **kw)
        elif text not in said:
            said.add(text)
            print(f"seewhy: note: {text}", file=sys.stderr)

    return note


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``seewhy`` command."""
    args = _parser().parse_args(argv)
    return run(_COMMANDS[args.command][2], args)

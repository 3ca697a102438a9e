"""``python -m seewhy.audit``: the audit command on its own."""

from __future__ import annotations

import argparse
import sys

from seewhy.errors import SeewhyError

from .command import EXIT_ERROR, add_audit_arguments, audit_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seewhy audit")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    add_audit_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return audit_command(args)
    except SeewhyError as exc:
        if args.debug:
            raise
        print(f"seewhy: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

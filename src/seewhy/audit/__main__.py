"""``python -m seewhy.audit``: the audit command on its own."""

from __future__ import annotations

import argparse
import sys

from seewhy.cli import run
from seewhy.cli.audit import add_audit_arguments, audit_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seewhy audit")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    add_audit_arguments(parser)
    return run(audit_command, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

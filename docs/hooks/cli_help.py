"""mkdocs hook: the command-line page shows the CLI's own ``--help`` text, so it cannot drift.

A line ``<!-- seewhy-help: explain -->`` in a page becomes the output of
``seewhy explain --help`` (an empty name: ``seewhy --help``), in a code block.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from typing import Any

_MARKER = re.compile(r"^<!-- seewhy-help:\s*([\w-]*)\s*-->$", re.MULTILINE)


def _help_text(command: str) -> str:
    """What ``seewhy [command] --help`` prints, at a fixed width so the page is reproducible."""
    from seewhy.cli import main

    os.environ["COLUMNS"] = "100"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main([command, "--help"] if command else ["--help"])
    return out.getvalue().rstrip()


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Replace each help marker with the help text it names."""
    return _MARKER.sub(lambda m: f"```text\n{_help_text(m.group(1))}\n```", markdown)

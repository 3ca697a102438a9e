"""What the commands share: exit codes, image sources, JSON output, the progress bar.

Commands print; the library under them prints nothing. Errors are raised as
:class:`~seewhy.SeewhyError` and turned into one line by :func:`seewhy.cli.run`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput
from ..inputs import iter_image_files
from ..inputs.decoding import SAMPLE_PREFIX
from ..provenance import MARK
from ..report.finite import finite_json
from ..terminal import printable

if TYPE_CHECKING:
    from .outputs import OutputPlan

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
    "Progress",
    "check_methods",
    "csv_list",
    "printable",
    "sources",
    "write_json",
]

#: 0 done, 1 error, 2 bad command line (argparse's own), 3 some images unreadable, 130 stopped.
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def csv_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``: the comma-separated lists options take."""
    return [item.strip() for item in text.split(",") if item.strip()]


def check_methods(text: str) -> list[str]:
    """The methods named in ``text``, each checked now: a typo fails before a model loads."""
    import seewhy

    methods = csv_list(text)
    for name in methods:
        seewhy.registry.get(name)
    return methods


def sources(images: list[str], recursive: bool = False) -> list[str]:
    """Samples first (each once), then the image files of the named files and folders, in order."""
    samples = list(dict.fromkeys(s for s in images if s.startswith(SAMPLE_PREFIX)))
    files = [s for s in images if not s.startswith(SAMPLE_PREFIX)]
    expanded = [str(p) for p in iter_image_files(files, recursive=recursive)] if files else []
    found = samples + expanded
    if not found:
        raise InvalidInput("images: no image files found in the given paths")
    return found


def write_json(payload: dict[str, Any], target: str | None, plan: OutputPlan) -> None:
    """Write ``payload`` as indented strict JSON to the file ``target``, or stdout for None / ``-``.

    The file was claimed in ``plan`` before the run; its first key,
    ``written_by``, is the mark by which a later run knows the file is
    seewhy's (see :mod:`.outputs`). A non-finite number (a model's NaN score)
    is written as null, never as the ``NaN`` token most JSON readers refuse.
    """
    marked = {"written_by": MARK, **payload}
    # ASCII only: every control, bidi or non-UTF-8 character in a name is a \u escape
    text = json.dumps(finite_json(marked), indent=2, allow_nan=False, ensure_ascii=True)
    if target is None or target == "-":
        print(text)
    else:
        with plan.open(Path(target)) as handle:
            handle.write(text.encode("ascii") + b"\n")


class Progress:
    """A tqdm bar on stderr fed with ``(done, total)``; nothing at all when ``quiet``.

    The bar is made on the first report, when the total is known, starting at
    the items already done, so that the rate and time left are this run's
    (a resumed audit starts part-way). ``options`` go to tqdm as they are.
    """

    def __init__(self, quiet: bool, **options: Any) -> None:
        self.quiet = quiet
        self.options = options
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, file=sys.stderr, **self.options)
            return
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

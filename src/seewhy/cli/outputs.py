"""Every file a command writes, decided before any model work: :class:`OutputPlan`.

A run's outputs (``explain``'s panels, ``--grid`` and ``--json``; ``evaluate``'s
``--json``; ``sanity``'s ``--out`` and ``--json``) are claimed here first. A
claim is refused in one line when the path is an input of the run (an image,
the model, its weights, a boxes or mask file; the same file also through a
link or a name that differs in case), another output of the run, a folder, or
an existing file seewhy did not write, unless ``--force``. Nothing is written
until every claim has passed, so a refused run leaves no file behind.

How a file seewhy wrote is known: seewhy marks what it writes
(:mod:`seewhy.provenance`), and :func:`written_by_seewhy` reads only the first
bytes of a file to find the mark. Re-running a command
into the same place therefore overwrites its own earlier outputs without
``--force``; a file without the mark (the user's, an older seewhy's, a grid or
plot in a format without text entries such as JPEG or PDF) needs ``--force``.
Non-regular files (``/dev/null``, a pipe) are written to, never read.
"""

from __future__ import annotations

import os
import stat
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from ..errors import InvalidInput
from ..inputs.decoding import SAMPLE_PREFIX
from ..provenance import written_by_seewhy
from ..terminal import printable

__all__ = [
    "OutputPlan",
    "input_paths",
    "picture_format",
    "same_file_key",
    "written_by_seewhy",
]


def same_file_key(path: str | Path) -> str:
    """What makes two paths the same file: absolute, links followed, case and Unicode form folded.

    Folding case is conservative on a case-sensitive disk (``A.png`` and
    ``a.png`` count as one), which only ever makes seewhy choose another name
    or refuse; on a case-insensitive disk (macOS, Windows) they are one file.
    """
    resolved = str(Path(os.path.abspath(path)).resolve())
    return unicodedata.normalize("NFC", os.path.normcase(resolved)).casefold()


def _identity(path: str | Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file, links followed: one file under any name."""
    try:
        found = os.stat(path)
    except (OSError, ValueError):
        return None
    return found.st_dev, found.st_ino


class OutputPlan:
    """The files one run will write, each checked against the inputs and the others.

    ``inputs`` are every path the run reads (samples are skipped); ``force``
    allows overwriting existing files seewhy did not write, never an input
    and never another output.
    """

    def __init__(self, inputs: Iterable[str | Path | None], *, force: bool = False) -> None:
        self.force = force
        self._inputs: dict[str, str] = {}
        self._input_ids: dict[tuple[int, int], str] = {}
        for item in inputs:
            if item is None or str(item).startswith(SAMPLE_PREFIX):
                continue
            self._inputs.setdefault(same_file_key(item), str(item))
            identity = _identity(item)
            if identity is not None:
                self._input_ids.setdefault(identity, str(item))
        self._claimed: dict[str, str] = {}  # key -> what the file is ("--json", "the panel of x")
        self._claimed_ids: dict[tuple[int, int], str] = {}
        self._absent: set[str] = set()  # keys of paths that did not exist when claimed
        self._strangers: list[tuple[str, str]] = []  # (option, path) seewhy did not write

    def conflict(self, path: Path) -> str | None:
        """Why ``path`` can never be this run's output (an input, another output, a folder)."""
        key, identity = same_file_key(path), _identity(path)
        source = self._inputs.get(key) or (identity and self._input_ids.get(identity))
        if source:
            return f"is the input {printable(source)} of this run"
        other = self._claimed.get(key) or (identity and self._claimed_ids.get(identity))
        if other:
            return f"is also {other}"
        if path.is_dir():
            return "is a folder"
        if identity is None and path.is_symlink():
            return "is a link to a missing file"
        return None

    def claim(self, path: str | Path, what: str, *, option: str) -> Path:
        """``path`` as ``what`` (``"--json"``, ``"the panel of cat.jpg"``), or a one-line refusal.

        ``option`` is what the user changes to choose another name (``--json``, ``--out``).
        """
        path = Path(path)
        reason = self.conflict(path)
        if reason is not None:
            raise InvalidInput(
                f"{option}: {printable(path)} {reason}; seewhy never writes over it, "
                "choose another name"
            )
        self._record(path, what, option)
        return path

    def _record(self, path: Path, what: str, option: str) -> None:
        """Note ``path`` as taken, whether it exists, and whether an existing file is seewhy's."""
        key = same_file_key(path)
        self._claimed[key] = what
        identity = _identity(path)
        if identity is None:
            self._absent.add(key)
            return
        self._claimed_ids[identity] = what
        try:
            regular = stat.S_ISREG(os.stat(path).st_mode)
        except OSError:
            regular = False
        if regular and not written_by_seewhy(path):
            self._strangers.append((option, str(path)))

    def check(self) -> None:
        """One line refusing a claimed file that exists and is not seewhy's (no ``--force``)."""
        if not self._strangers or self.force:
            return
        option, first = self._strangers[0]
        more = f" (and {len(self._strangers) - 1} more)" if len(self._strangers) > 1 else ""
        raise InvalidInput(
            f"{option}: {printable(first)}{more} already exists and seewhy did not write it; "
            "choose another name, or add --force to overwrite it"
        )

    def open(self, path: Path) -> IO[bytes]:
        """``path`` opened for writing; one that was absent when claimed must still be absent.

        Another program creating the file meanwhile gets a one-line refusal,
        not its file overwritten.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = same_file_key(path) in self._absent
        try:
            return open(path, "xb" if fresh else "wb")
        except FileExistsError:
            raise InvalidInput(
                f"{printable(path)} appeared while seewhy was working; it was left as it is"
            ) from None


def input_paths(args: object, images: Iterable[str]) -> list[str]:
    """Every file the command reads: the images, the model and weights, boxes, a region mask."""
    found = list(images)
    for name in ("model", "weights", "boxes", "masks"):
        value = getattr(args, name, None)
        if isinstance(value, str) and os.path.exists(value):
            found.append(value)
    target = getattr(args, "target", None)
    if isinstance(target, str) and target.strip().lower().startswith("region:"):
        found.append(target.split(":", 2)[-1])  # region:CLASS:mask.png
    return found


def picture_format(path: str | Path, option: str, formats: dict[str, str]) -> str:
    """The format ``path``'s ending names among ``formats`` (ending -> format), or one line.

    Checked when the output is claimed, so a typo in an ending fails before the model loads.
    """
    ending = Path(path).suffix.lower()
    if ending not in formats:
        shown = ", ".join(sorted(e for e in formats if e in _COMMON_ENDINGS)) or "none"
        raise InvalidInput(
            f"{option}: {printable(path)} does not end in a picture format seewhy can write "
            f"(e.g. {shown})"
        )
    return formats[ending]


_COMMON_ENDINGS = (".png", ".jpg", ".webp", ".pdf", ".svg")

"""A list file of images to audit: one path per line, optionally with its true class."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from seewhy.errors import InvalidInput
from seewhy.inputs.files import display_path, safe_text

from .boxes import PATH_COLUMNS

__all__ = ["LIST_SUFFIXES", "read_list"]

LIST_SUFFIXES = frozenset({".txt", ".csv", ".tsv", ".lst"})
_LABEL_COLUMNS = ("label", "class", "true", "true_label", "target", "y")
_LINE_ENDS = re.compile(r"\r\n|\r|\n")  # what a list file's lines end with; not U+2028


def read_list(path: Path) -> list[tuple[str, str | None]]:
    """(path, label or None) per line of a list file; lines end at CR, LF or CRLF only.

    Undecodable bytes in a path are kept (as :func:`os.fsdecode` would), so a
    listed file whose name is not UTF-8 is still found.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig", "surrogateescape")
    except OSError as exc:
        raise InvalidInput(
            f"data: cannot read list file {display_path(path)!r} ({exc.strerror})"
        ) from exc
    if "\x00" in text:
        raise InvalidInput(f"data: list file {display_path(path)!r} holds NUL bytes, not text")
    lines = [ln for ln in _LINE_ENDS.split(text) if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return []
    delimiter = "\t" if "\t" in lines[0] or path.suffix.lower() == ".tsv" else ","
    try:
        rows = [[c.strip() for c in row] for row in csv.reader(lines, delimiter=delimiter)]
    except csv.Error as exc:
        raise InvalidInput(f"data: list file {display_path(path)!r}: {exc}") from exc
    header = [c.lower() for c in rows[0]]
    path_col, label_col = 0, 1
    if any(c in PATH_COLUMNS for c in header):
        path_col = next(i for i, c in enumerate(header) if c in PATH_COLUMNS)
        label_col = next((i for i, c in enumerate(header) if c in _LABEL_COLUMNS), -1)
        rows = rows[1:]
    out: list[tuple[str, str | None]] = []
    for row in rows:
        if len(row) <= path_col or not row[path_col]:
            continue
        label = row[label_col] if 0 <= label_col < len(row) and row[label_col] else None
        out.append((row[path_col], None if label is None else safe_text(label)))
    return out

"""Box files (JSON or CSV), checked box by box when they are read.

Why box by box: one NaN, a zero-area box or a ``true`` typed for a number
must cost that box, with a note saying so, and not the image or the whole
audit; a file that is not a box file at all (binary data, a bare number, an
object without boxes) is one :class:`~seewhy.errors.InvalidInput` line.

Forms understood: JSON ``{file: [x0, y0, x1, y1]}`` (or a list of boxes, or
``{"box": ...}`` / ``{"x0": ...}`` objects per file), a JSON list of
``{"file": ..., "box": [...]}`` objects, and CSV with a ``file`` (or
``path``) column and ``x0, y0, x1, y1`` (or ``xmin, ...``) columns. Values
are pixels of the original image, or fractions when all four are <= 1.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seewhy.errors import InvalidInput
from seewhy.inputs.files import display_path, safe_text

__all__ = ["MAX_NOTES", "Box", "BoxFile", "load_boxes", "read_boxes"]

Box = tuple[float, float, float, float]

#: Bad boxes named one line each, up to this many; the rest are counted in one more line.
MAX_NOTES = 20

PATH_COLUMNS = ("path", "file", "filename", "image", "source")
BOX_COLUMNS = (("x0", "y0", "x1", "y1"), ("xmin", "ymin", "xmax", "ymax"))
_EXPECTED = "[x0, y0, x1, y1] or a list of them"


@dataclass(frozen=True)
class BoxFile:
    """The good boxes per file key, and one line per box that was ignored."""

    table: dict[str, list[Box]]
    notes: tuple[str, ...] = ()


def _shown(value: Any) -> str:
    text = safe_text(repr(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: Any) -> float | str:
    """The coordinate as a float, or why it is not one."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "a boolean is not a coordinate"
    if not isinstance(value, (int, float, str)):
        return f"{type(value).__name__} is not a coordinate"
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return f"{_shown(value)} is not a number"
    return number if math.isfinite(number) else "coordinates must be finite"


def check_box(values: Any) -> Box | str:
    """``values`` as a box, or a short reason why it cannot be one."""
    if isinstance(values, Mapping):
        cols = next((c for c in BOX_COLUMNS if all(k in values for k in c)), None)
        if cols is None:
            return "expected keys x0, y0, x1, y1"
        values = [values[k] for k in cols]
    if not isinstance(values, (list, tuple)):
        return "expected [x0, y0, x1, y1]"
    if len(values) != 4:
        return f"expected 4 numbers, got {len(values)}"
    numbers: list[float] = []
    for v in values:
        n = _number(v)
        if isinstance(n, str):
            return n
        numbers.append(n)
    x0, y0, x1, y1 = numbers
    if x1 < x0 or y1 < y0:
        return "expected x0 <= x1 and y0 <= y1"
    if x1 == x0 or y1 == y0:
        return "the box has no area"
    return (x0, y0, x1, y1)


class _Reader:
    """Gathers the boxes of one file and the notes on the ones it ignored."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.table: dict[str, list[Box]] = {}
        self.bad: list[str] = []

    def add(self, key: str, values: Any, where: str) -> None:
        self.table.setdefault(key, [])
        result = check_box(values)
        if isinstance(result, str):
            self.bad.append(f"boxes: {where} {_shown(values)}: {result}; box ignored")
        else:
            self.table[key].append(result)

    def add_many(self, key: str, value: Any) -> None:
        """Every box given for one file, in any of the JSON forms."""
        shown = safe_text(repr(key))
        self.table.setdefault(key, [])
        if isinstance(value, Mapping) and "boxes" in value:
            value = value["boxes"]
        elif isinstance(value, Mapping):
            value = [value.get("box", value)]  # one box: never unwrapped further
        elif isinstance(value, (list, tuple)) and value:
            if not isinstance(value[0], (list, tuple, Mapping)):
                value = [value]  # one box, not a list of them
        if value is None:
            return
        if not isinstance(value, (list, tuple)):
            raise InvalidInput(
                f"boxes: {self.name}: {shown}: expected {_EXPECTED}, got {_shown(value)}"
            )
        for n, box in enumerate(value, start=1):
            if not isinstance(box, (list, tuple, Mapping)):
                raise InvalidInput(
                    f"boxes: {self.name}: {shown}: expected {_EXPECTED}, got {_shown(box)}"
                )
            self.add(key, box, f"{shown} box {n}")

    def result(self) -> BoxFile:
        notes = self.bad[:MAX_NOTES]
        if len(self.bad) > MAX_NOTES:
            notes.append(f"boxes: {len(self.bad) - MAX_NOTES} more bad boxes ignored")
        return BoxFile(self.table, tuple(notes))


def _key(entry: Mapping[str, Any], name: str, n: int) -> str:
    key = next((entry[c] for c in PATH_COLUMNS if c in entry), None)
    if not isinstance(key, str) or not key:
        raise InvalidInput(f"boxes: {name}: entry {n}: expected a 'file' (or 'path') name")
    return key


def _from_json(data: Any, reader: _Reader) -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            reader.add_many(str(key), value)
        return
    if not isinstance(data, list):
        raise InvalidInput(
            f"boxes: {reader.name}: expected a JSON object {{file: [x0, y0, x1, y1]}} "
            f"or a list of {{file, box}} objects, got {type(data).__name__}"
        )
    for n, entry in enumerate(data, start=1):
        if not isinstance(entry, dict):
            raise InvalidInput(
                f"boxes: {reader.name}: entry {n}: expected an object with a 'file' and a "
                f"'box', got {_shown(entry)}"
            )
        key = _key(entry, reader.name, n)
        if "boxes" in entry or "box" in entry:
            reader.add_many(key, {k: entry[k] for k in ("box", "boxes") if k in entry})
        elif any(all(k in entry for k in c) for c in BOX_COLUMNS):
            reader.add(key, entry, f"entry {n} ({safe_text(repr(key))})")
        else:
            raise InvalidInput(f"boxes: {reader.name}: entry {n}: expected 'box' or x0, y0, x1, y1")


def _from_csv(text: str, reader: _Reader) -> None:
    rows = csv.DictReader(io.StringIO(text, newline=""))  # real line ends only
    fields = {f.strip().lower(): f for f in rows.fieldnames or () if f}
    key_col = next((fields[c] for c in PATH_COLUMNS if c in fields), None)
    cols = next((c for c in BOX_COLUMNS if all(k in fields for k in c)), None)
    if key_col is None or cols is None:
        raise InvalidInput(
            f"boxes: {reader.name}: expected CSV columns file (or path) and x0, y0, x1, y1"
        )
    for n, row in enumerate(rows, start=2):
        key = row.get(key_col)
        if not key:
            continue
        values = [row.get(fields[k]) or "" for k in cols]
        reader.add(key, [v.strip() for v in values], f"line {n} ({safe_text(repr(key))})")


def read_boxes(path: str | os.PathLike[str]) -> BoxFile:
    """Read a box file; bad boxes become notes, a file that is not one an error."""
    p = Path(path)
    name = display_path(p.name)
    if not p.is_file():
        raise InvalidInput(f"boxes: expected a JSON or CSV file, got {display_path(p)!r}")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise InvalidInput(f"boxes: cannot read {display_path(p)!r} ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"boxes: {name} is not UTF-8 text (binary data?)") from exc
    if "\x00" in text:
        raise InvalidInput(f"boxes: {name} holds NUL bytes, expected JSON or CSV text")
    reader = _Reader(name)
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"boxes: {name} is not valid JSON ({exc.msg})") from exc
        except RecursionError as exc:
            raise InvalidInput(f"boxes: {name} is nested too deeply to be a box file") from exc
        _from_json(data, reader)
    else:
        try:
            _from_csv(text, reader)
        except csv.Error as exc:
            raise InvalidInput(f"boxes: {name} is not valid CSV ({exc})") from exc
    return reader.result()


def load_boxes(path: str | os.PathLike[str]) -> dict[str, list[Box]]:
    """The good boxes per file key of a box file (see :func:`read_boxes` for the notes)."""
    return read_boxes(path).table

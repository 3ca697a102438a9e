"""The audit's tables: one flat row per image, as CSV always and Parquet when pyarrow is here.

File and class names come from whoever made the data set or the model, and a
spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab
or carriage return) as a formula: ``=HYPERLINK(...)`` sends data away when
clicked, ``=cmd|...`` has run programs. So every text cell of a CSV goes
through :func:`spreadsheet_cell`: such a cell gets a leading apostrophe (the
OWASP rule for CSV injection), control characters and bidirectional
overrides become visible escapes, and numbers stay numbers.
"""

from __future__ import annotations

import csv
import io
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from seewhy.terminal import printable

__all__ = ["FORMULA_STARTS", "csv_bytes", "flat_row", "spreadsheet_cell", "table_files"]

#: First characters that make a spreadsheet read a cell as a formula (with full-width forms).
FORMULA_STARTS = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")


def spreadsheet_cell(value: Any) -> Any:
    """``value`` safe for a spreadsheet cell: numbers as they are, text neutralised.

    Text that would start a formula (after any leading spaces, which some
    importers trim) is prefixed with ``'``, which spreadsheets show as text
    and do not evaluate; control characters and bidi overrides become escapes
    such as ``\\x1b`` (the terminal's one rule, :func:`seewhy.terminal.printable`).
    """
    if value is None or isinstance(value, numbers.Real):  # bool, int, float, numpy's
        return value
    text = printable(value)
    if text[:1] in FORMULA_STARTS or text.lstrip(" ")[:1] in FORMULA_STARTS:
        return "'" + text
    return text


def csv_bytes(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> bytes:
    """UTF-8 CSV of ``rows`` with every cell, header included, through :func:`spreadsheet_cell`."""
    names = [spreadsheet_cell(c) for c in columns]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(names)
    writer.writerows([spreadsheet_cell(row.get(c)) for c in columns] for row in rows)
    return text.getvalue().encode("utf-8")


def table_files(records: Sequence[Mapping[str, Any]], methods: Sequence[str]) -> dict[str, bytes]:
    """``results.csv`` always, ``results.parquet`` when pyarrow is installed, as bytes.

    The Parquet table keeps the values as they are: it is typed, and no
    program that reads it evaluates formulas.
    """
    rows = [flat_row(r, methods) for r in records]
    columns = list(rows[0]) if rows else list(flat_row({}, methods))
    files = {"results.csv": csv_bytes(columns, rows)}
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return files
    table = pa.Table.from_pylist(rows, schema=_arrow_schema(pa, columns))
    sink = io.BytesIO()
    pq.write_table(table, sink)
    files["results.parquet"] = sink.getvalue()
    return files


def _share(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.4f}"


_FLOAT_COLUMNS = {"confidence", "true_probability", "suspicion"}
_INT_COLUMNS = {"index", "true_index", "pred_index", "width", "height", "shard", "row"}


def _arrow_schema(pa: Any, columns: Iterable[str]) -> Any:
    def kind(name: str) -> Any:
        if name in _INT_COLUMNS:
            return pa.int64()
        if name in _FLOAT_COLUMNS or name.endswith("_energy"):
            return pa.float64()
        if name == "correct":
            return pa.bool_()
        return pa.string()

    return pa.schema([(c, kind(c)) for c in columns])


def flat_row(record: Mapping[str, Any], methods: Sequence[str]) -> dict[str, Any]:
    """One record as a flat table row (lists joined with '; ')."""
    top = record.get("top") or []
    row: dict[str, Any] = {
        "index": record.get("index"),
        "name": record.get("name"),
        "path": record.get("path"),
        "status": record.get("status"),
        "reason": record.get("reason"),
        "true_label": record.get("true_label"),
        "true_index": record.get("true_index"),
        "pred_label": record.get("pred_label"),
        "pred_index": record.get("pred_index"),
        "confidence": record.get("confidence"),
        "true_probability": record.get("true_probability"),
        "correct": record.get("correct"),
        "flags": "; ".join(record.get("flags") or []),
        "suspicion": record.get("suspicion"),
        "top_k": "; ".join(f"{label} ({_share(p)})" for label, _, p in top),
        "width": record.get("width"),
        "height": record.get("height"),
        "notes": "; ".join(record.get("notes") or []),
        "shard": record.get("shard"),
        "row": record.get("row"),
    }
    energies = record.get("energies") or {}
    for m in methods:
        e = energies.get(m) or {}
        row[f"{m}_object_energy"] = e.get("object")
        row[f"{m}_border_energy"] = e.get("border")
    return row

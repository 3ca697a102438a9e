"""The audit's tables: one flat row per image, as CSV always and Parquet when pyarrow is here."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["flat_row", "table_files"]


def table_files(records: Sequence[Mapping[str, Any]], methods: Sequence[str]) -> dict[str, bytes]:
    """``results.csv`` always, ``results.parquet`` when pyarrow is installed, as bytes."""
    rows = [flat_row(r, methods) for r in records]
    columns = list(rows[0]) if rows else list(flat_row({}, methods))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    files = {"results.csv": text.getvalue().encode("utf-8")}
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

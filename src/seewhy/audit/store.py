"""The audit's folder on disk, written so that a killed run loses nothing.

Every file appears atomically (a temporary file in the same folder, then
``os.replace``), so a reader never sees half a file. The manifest
(``audit.json``) fixes the items and settings when a run starts; each batch
then leaves its pictures, its maps (``shards/NNNNNNN.npz``) and finally its
records (``shards/NNNNNNN.json``). The records file is written last and is
the batch's "done" mark: a resumed run redoes exactly the batches without
one. Tables and the report are rebuilt from the shards at the end.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seewhy.errors import InvalidInput

from .dataset import Item
from .worker import BatchResult

__all__ = ["FORMAT", "Store", "atomic_write", "flat_row"]

FORMAT = "seewhy-audit/1"
MANIFEST = "audit.json"
SHARDS = "shards"
IMAGES = "images"
_OWNED = (MANIFEST, SHARDS, IMAGES, "index.html", "results.csv", "results.parquet", "summary.json")


def atomic_write(path: Path, data: bytes, *, sync: bool = False) -> None:
    """Write ``data`` to ``path`` so it is either the old file or the whole new one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """A compressed ``.npz`` (what ``np.load`` reads), at zlib level 1.

    Why not ``np.savez_compressed``: its default level costs twice the time
    for 1 % smaller maps, and this runs once per image.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True).encode("utf-8")


class Store:
    """Reads and writes one audit folder."""

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.out = Path(out)
        self.shards = self.out / SHARDS
        self.images = self.out / IMAGES

    # ------------------------------------------------------------------ start / resume

    def open(
        self, config: Mapping[str, Any], items: Sequence[Item], *, overwrite: bool = False
    ) -> set[int]:
        """Create or reopen the folder; return the batches already done.

        A folder that holds an audit of other items or settings is refused
        (unless ``overwrite``), since mixing the two would give wrong tables.
        """
        fingerprint = _fingerprint(config, items)
        manifest_path = self.out / MANIFEST
        if overwrite:
            self.clear()
        if manifest_path.is_file():
            try:
                old = json.loads(manifest_path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                old = {}
            if old.get("fingerprint") != fingerprint:
                raise InvalidInput(
                    f"out: {str(self.out)!r} holds an audit with other images or settings; "
                    "choose another folder or pass --overwrite to replace it"
                )
        self.shards.mkdir(parents=True, exist_ok=True)
        self.images.mkdir(parents=True, exist_ok=True)
        self._clean_temporaries()
        if not manifest_path.is_file():
            manifest = {
                "format": FORMAT,
                "fingerprint": fingerprint,
                "config": dict(config),
                "items": [item.to_json() for item in items],
            }
            atomic_write(manifest_path, _json_bytes(manifest), sync=True)
        return self.done()

    def clear(self) -> None:
        """Remove what an audit wrote here, and nothing else."""
        for name in _OWNED:
            p = self.out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()

    def _clean_temporaries(self) -> None:
        for folder in (self.out, self.shards, self.images):
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)

    def done(self) -> set[int]:
        """Batches whose records file exists and reads back."""
        finished: set[int] = set()
        for p in self.shards.glob("*.json"):
            if p.stem.isdigit():
                finished.add(int(p.stem))
        return finished

    def manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.out / MANIFEST).read_text(encoding="utf-8"))
        return data

    # ------------------------------------------------------------------ per batch

    def write(self, result: BatchResult) -> None:
        """Pictures, then maps, then records: the records file marks the batch done."""
        for name, data in result.images.items():
            atomic_write(self.images / name, data)
        atomic_write(self.shards / f"{result.index:07d}.npz", npz_bytes(result.arrays), sync=True)
        atomic_write(
            self.shards / f"{result.index:07d}.json",
            _json_bytes({"batch": result.index, "records": result.records}),
            sync=True,
        )

    def records(self) -> list[dict[str, Any]]:
        """Every record written so far, in item order."""
        out: list[dict[str, Any]] = []
        for p in sorted(self.shards.glob("*.json")):
            out.extend(json.loads(p.read_text(encoding="utf-8"))["records"])
        out.sort(key=lambda r: int(r["index"]))
        return out

    def maps(self, method: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(item indices, maps) of one method, gathered from every shard, in item order."""
        ids: list[np.ndarray] = []
        maps: list[np.ndarray] = []
        for p in sorted(self.shards.glob("*.npz")):
            with np.load(p) as data:
                if f"maps_{method}" in data:
                    ids.append(data["ids"])
                    maps.append(data[f"maps_{method}"])
        if not ids:
            return np.zeros(0, np.int64), np.zeros((0, 0, 0), np.float16)
        all_ids = np.concatenate(ids)
        order = np.argsort(all_ids, kind="stable")
        return all_ids[order], np.concatenate(maps)[order]

    # ------------------------------------------------------------------ tables

    def write_tables(
        self, records: Sequence[Mapping[str, Any]], methods: Sequence[str]
    ) -> list[Path]:
        """``results.csv`` always, ``results.parquet`` when pyarrow is installed."""
        rows = [flat_row(r, methods) for r in records]
        columns = list(rows[0]) if rows else list(flat_row({}, methods))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        written = [self.out / "results.csv"]
        atomic_write(written[0], text.getvalue().encode("utf-8"))
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            return written
        table = pa.Table.from_pylist(rows, schema=_arrow_schema(pa, columns))
        sink = io.BytesIO()
        pq.write_table(table, sink)
        atomic_write(self.out / "results.parquet", sink.getvalue())
        written.append(self.out / "results.parquet")
        return written


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
        "top_k": "; ".join(f"{label} ({p:.4f})" for label, _, p in top),
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


def _fingerprint(config: Mapping[str, Any], items: Sequence[Item]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(config, sort_keys=True, default=str).encode("utf-8"))
    for item in items:
        digest.update(json.dumps(item.to_json(), sort_keys=True).encode("utf-8"))
    return digest.hexdigest()

"""The audit's folder on disk: written so a killed run loses nothing, read back only when intact.

Every file appears atomically (a temporary file in the same folder, then
``os.replace``), so a reader never sees half a file. ``audit.json`` fixes the
items and settings when a run starts. ``files.jsonl`` is the ledger of every
file seewhy writes here, with its size and SHA-256, appended (and synced)
*before* the file is written: so ``--overwrite`` can remove exactly what seewhy
wrote and nothing else, and a resumed run can tell an intact batch from a
damaged one. The ledger is a claim, not a licence: a file is removed or
written over only while its size and SHA-256 still match (see
:mod:`.ownership`); a file that changed since is the user's. Each batch
leaves its pictures, its maps (``shards/NNNNNNN.npz``) and finally its
records (``shards/NNNNNNN.json``), the batch's "done" mark.
A batch is resumed only when its records and maps match the ledger and its
records are exactly the batch's items; anything else is redone, with a note.
A non-empty folder without seewhy's manifest (``audit.json``) is never
touched, whatever else it holds; one run at a time holds the folder's lock
(:mod:`.lock`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seewhy.errors import InvalidInput
from seewhy.report.tables import flat_row, table_files

from .bytes_on_disk import atomic_write, file_sha256, json_bytes, npz_bytes
from .dataset import Item
from .lock import LOCK
from .ownership import TOP_LEVEL, add_version, in_the_way, remove_if_unchanged
from .worker import BatchResult, method_key

__all__ = ["FORMAT", "Store", "atomic_write", "flat_row"]

FORMAT = "seewhy-audit/2"
_LEGACY = "seewhy-audit/1"  # no ledger: nothing in it can be checked, so nothing is removed
MANIFEST = "audit.json"
LEDGER = "files.jsonl"
SHARDS = "shards"
IMAGES = "images"
#: Every name seewhy writes in an audit folder; nothing else is ever removed.
_OURS = re.compile(
    r"(?:index\.html|results\.csv|results\.parquet|summary\.json"
    r"|shards/\d{7,}\.(?:npz|json)|images/\d{7,}(?:\.m\d+)?\.jpg)"
)
_TEMPORARY = re.compile(r"\.(?P<name>[^/]+)\.[A-Za-z0-9_]+\.tmp")
_MISSING = "missing"


def _damaged(rel: str, problem: str) -> InvalidInput:
    return InvalidInput(
        f"out: {rel} is damaged ({problem}); run the same audit again to redo that batch"
    )


class Store:
    """Reads and writes one audit folder.

    Making one reads and writes nothing; :meth:`maps` reads a finished or
    interrupted audit's maps back (what :func:`seewhy.audit.load_maps` does).

    Parameters
    ----------
    out : str or path
        The audit's folder (``audit(..., out=)``).
    """

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.out = Path(out)
        self.shards = self.out / SHARDS
        self.images = self.out / IMAGES
        #: Every version of each file seewhy listed (latest last): a run killed between
        #: listing a new report and writing it leaves the previous one, which is seewhy's too.
        self._ledger: dict[str, list[dict[str, Any]]] = {}
        self._batches: list[list[int]] | None = None  # item indices of each batch
        self._methods = 1
        #: One line per batch found damaged and redone, for the run's notes.
        self.repairs: list[str] = []
        #: One line naming the files ``--overwrite`` left because they changed, if any.
        self.kept: list[str] = []

    # ------------------------------------------------------------------ what is in --out

    def state(self) -> str:
        """``new`` (missing, or empty but for the lock), ``ours``, ``legacy`` or ``foreign``.

        Only seewhy's manifest makes a folder seewhy's: a ledger alone is
        something anyone can write, so a folder with ``files.jsonl`` and no
        ``audit.json`` is foreign.
        """
        if not self.out.exists() and not self.out.is_symlink():
            return "new"
        if not self.out.is_dir():
            raise InvalidInput(f"out: expected a folder, got the file {str(self.out)!r}")
        if all(p.name == LOCK for p in self.out.iterdir()):
            return "new"
        manifest = _read_json(self.out / MANIFEST)
        kind = manifest.get("format") if isinstance(manifest, dict) else None
        if kind == FORMAT and isinstance(manifest, dict) and "fingerprint" in manifest:
            return "ours"
        return "legacy" if kind == _LEGACY else "foreign"

    def claim(self, *, overwrite: bool = False) -> str:
        """The folder's state, or a one-line error when seewhy may not write there.

        A non-empty folder that seewhy did not write is refused, with or
        without ``overwrite``, and nothing in it is touched. So is an audit of
        the first format: it has no ledger, so none of its files can be
        shown to be unchanged, and seewhy removes only what it can check.
        """
        state = self.state()
        where = repr(str(self.out))
        if state == "foreign":
            hint = " (a files.jsonl without audit.json is not one)"
            raise InvalidInput(
                f"out: {where} is not empty and holds no seewhy audit"
                f"{hint if os.path.lexists(self.out / LEDGER) else ''}; seewhy writes only to "
                "a new or empty folder, or one it wrote (--overwrite cannot change that)"
            )
        if state == "legacy":
            raise InvalidInput(
                f"out: {where} holds an audit made by an older seewhy, whose files cannot be "
                "checked one by one, so seewhy will not remove them (with or without "
                "--overwrite); choose another folder, or delete that one yourself"
            )
        for name in (MANIFEST, LEDGER, SHARDS, IMAGES):
            if (self.out / name).is_symlink():
                raise InvalidInput(f"out: {where} has a link at {name}; seewhy will not follow it")
        return state

    # ------------------------------------------------------------------ start / resume

    def open(
        self, config: Mapping[str, Any], items: Sequence[Item], *, overwrite: bool = False
    ) -> set[int]:
        """Create or reopen the folder; return the batches already done and intact.

        A folder that holds an audit of other items or settings is refused
        (unless ``overwrite``), since mixing the two would give wrong tables.
        A file this run would write over that seewhy may not replace (see
        :func:`.ownership.in_the_way`) is refused in one line before
        anything is removed or written.
        """
        state = self.claim(overwrite=overwrite)
        fingerprint = _fingerprint(config, items)
        self._plan(config, [item.index for item in items])
        if state == "ours":
            self._ledger = _read_ledger(self.out / LEDGER)
            fresh = overwrite or self.manifest().get("fingerprint") != fingerprint
            if fresh and not overwrite:
                raise InvalidInput(
                    f"out: {str(self.out)!r} holds an audit with other images or "
                    "settings; choose another folder or pass --overwrite to replace it"
                )
            self._refuse_in_the_way(items, replacing_all=fresh)
            if fresh:
                self.clear()
                state = "new"
        if state == "new":  # the manifest first: a kill after it leaves a folder that is ours
            manifest = {
                "format": FORMAT,
                "fingerprint": fingerprint,
                "config": dict(config),
                "items": [item.to_json() for item in items],
            }
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write(self.out / MANIFEST, json_bytes(manifest), sync=True)
            self._ledger = {}
            atomic_write(self.out / LEDGER, b"", sync=True)
        else:  # compact: the last entry of each file, and no torn last line
            lines = "".join(
                json.dumps(e, sort_keys=True) + "\n" for v in self._ledger.values() for e in v
            )
            atomic_write(self.out / LEDGER, lines.encode("utf-8"), sync=True)
        self.shards.mkdir(exist_ok=True)
        self.images.mkdir(exist_ok=True)
        self._clean_temporaries()
        return self.done()

    def planned(self, items: Sequence[Item]) -> set[str]:
        """Every name this run may write: reports, tables, each batch's shards, each picture."""
        names = set(TOP_LEVEL)
        for k in range(len(self._load())):
            names.update((f"{SHARDS}/{k:07d}.json", f"{SHARDS}/{k:07d}.npz"))
        for item in items:
            names.add(f"{IMAGES}/{item.index:07d}.jpg")
            names.update(
                f"{IMAGES}/{item.index:07d}.{method_key(j)}.jpg" for j in range(self._methods)
            )
        return names

    def _refuse_in_the_way(self, items: Sequence[Item], *, replacing_all: bool) -> None:
        blocked = in_the_way(
            self.out, self.planned(items), self._ledger, replacing_all=replacing_all
        )
        if blocked:
            more = f" and {len(blocked) - 1} more" if len(blocked) > 1 else ""
            raise InvalidInput(
                f"out: {blocked[0]}{more} in {str(self.out)!r} changed since seewhy wrote it "
                "(or seewhy never did), and this run would write over it; move it out of the "
                "folder and run again (nothing was removed)"
            )

    def _plan(self, config: Mapping[str, Any], indices: Sequence[int]) -> None:
        size = int(config["batch_size"])
        self._batches = [list(indices[i : i + size]) for i in range(0, len(indices), size)]
        self._methods = len(config.get("methods") or ()) or 1

    def _load(self) -> list[list[int]]:
        """The batches of a finished or stopped audit, for reading it back."""
        if self._batches is None:
            if self.state() != "ours":
                raise InvalidInput(f"out: {str(self.out)!r} holds no readable seewhy audit")
            manifest = self.manifest()
            self._plan(manifest["config"], [int(it["index"]) for it in manifest["items"]])
            self._ledger = _read_ledger(self.out / LEDGER)
        assert self._batches is not None
        return self._batches

    def clear(self) -> None:
        """Remove the files the ledger lists that are still exactly what seewhy wrote.

        A listed file whose size or SHA-256 differs (edited, replaced, a link)
        stays, and ``kept`` says so; so does anything the ledger does not list.
        The manifest and ledger stay until the new ones replace them, so a
        kill in between leaves a folder seewhy still recognises.
        """
        changed = [
            rel
            for rel, versions in sorted(self._ledger.items())
            if not remove_if_unchanged(self.out, rel, versions) and os.path.lexists(self.out / rel)
        ]
        if changed:
            more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
            self.kept.append(
                f"--overwrite kept {len(changed)} file(s) listed in files.jsonl that changed "
                f"since seewhy wrote them: {', '.join(changed[:5])}{more}"
            )
        self._clean_temporaries()
        self._ledger = {}

    def _clean_temporaries(self) -> None:
        """Half-written files of a killed run: only temporaries of seewhy's own names."""
        for folder in (self.out, self.shards, self.images):
            if not folder.is_dir() or folder.is_symlink():
                continue
            prefix = "" if folder == self.out else folder.name + "/"
            for tmp in folder.glob(".*.tmp"):
                found = _TEMPORARY.fullmatch(tmp.name)
                name = prefix + found["name"] if found else ""
                if found and (_OURS.fullmatch(name) or name in (MANIFEST, LEDGER)):
                    tmp.unlink(missing_ok=True)

    def manifest(self) -> dict[str, Any]:
        data = _read_json(self.out / MANIFEST)
        if not isinstance(data, dict):
            raise InvalidInput(f"out: {str(self.out)!r} has no readable audit.json")
        return data

    # ------------------------------------------------------------------ checks

    def _problem(self, rel: str, *, checksum: bool = True) -> str | None:
        """None when ``rel`` is the file the ledger lists, else what is wrong with it."""
        path = self.out / rel
        if not path.exists() and not path.is_symlink():
            return _MISSING
        versions = self._ledger.get(rel)
        if not versions:
            return "not written by this audit"
        entry = versions[-1]
        if path.is_symlink() or not path.is_file():
            return "not a plain file"
        size = path.stat().st_size
        if size != entry["size"]:
            return f"{size} bytes, expected {entry['size']}"
        if checksum and file_sha256(path) != entry["sha256"]:
            return "its checksum differs"
        return None

    def _batch_problem(self, k: int) -> tuple[str, str] | None:
        """(file, what is wrong) for a batch that cannot be resumed; None when intact."""
        records_rel, maps_rel = f"{SHARDS}/{k:07d}.json", f"{SHARDS}/{k:07d}.npz"
        for rel in (records_rel, maps_rel):
            problem = self._problem(rel)
            if problem is not None:
                return rel, problem
        rows = self._rows(k)
        if rows is None:
            return records_rel, "its records are not this batch's images"
        for r in rows:
            if r.get("row") is None:
                continue
            names = [f"{r['index']:07d}.jpg"]
            names += [f"{r['index']:07d}.{method_key(j)}.jpg" for j in range(self._methods)]
            for name in names:
                problem = self._problem(f"{IMAGES}/{name}", checksum=False)
                if problem is not None:
                    return f"{IMAGES}/{name}", problem
        return None

    def _rows(self, k: int) -> list[dict[str, Any]] | None:
        """Batch ``k``'s records, when they are exactly its images in order; else None."""
        data = _read_json(self.out / f"{SHARDS}/{k:07d}.json")
        rows = data.get("records") if isinstance(data, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            return None
        return rows if [r.get("index") for r in rows] == self._load()[k] else None

    def done(self) -> set[int]:
        """Batches whose records, maps and pictures are all intact.

        A batch with no records file is simply not done yet; one whose files
        are damaged or foreign is redone, and ``repairs`` says why.
        """
        finished: set[int] = set()
        for k in range(len(self._load())):
            found = self._batch_problem(k)
            if found is None:
                finished.add(k)
            elif not (found[0].endswith(".json") and found[1] == _MISSING):
                self.repairs.append(f"batch {k} redone: {found[0]} was {_what(found[1])}")
        return finished

    # ------------------------------------------------------------------ per batch

    def _list(self, files: Mapping[str, bytes], batch: int | None = None) -> None:
        """Add ``files`` to the ledger (synced) before any of them is written."""
        entries: list[dict[str, Any]] = []
        for rel, data in files.items():
            if not _OURS.fullmatch(rel):
                raise InvalidInput(f"out: refusing to write {rel!r}, not a name of seewhy's")
            digest = hashlib.sha256(data).hexdigest()
            entries.append({"path": rel, "size": len(data), "sha256": digest, "batch": batch})
        with (self.out / LEDGER).open("a", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(e, sort_keys=True) + "\n" for e in entries))
            fh.flush()
            os.fsync(fh.fileno())
        for e in entries:
            add_version(self._ledger, e)

    def put(self, rel: str, data: bytes, *, sync: bool = False) -> Path:
        """Write one of seewhy's files (listed first); returns its path."""
        self._list({rel: data})
        atomic_write(self.out / rel, data, sync=sync)
        return self.out / rel

    def write(self, result: BatchResult) -> None:
        """Pictures, then maps, then records: the records file marks the batch done."""
        k = result.index
        files = {f"{IMAGES}/{name}": data for name, data in result.images.items()}
        files[f"{SHARDS}/{k:07d}.npz"] = npz_bytes(result.arrays)
        files[f"{SHARDS}/{k:07d}.json"] = json_bytes({"batch": k, "records": result.records})
        self._list(files, batch=k)
        for rel, data in files.items():
            atomic_write(self.out / rel, data, sync=rel.startswith(SHARDS))

    def _intact_shards(self, suffix: str) -> Iterator[tuple[int, str]]:
        """(batch, path) of each written shard with ``suffix``; a damaged one is an error."""
        for k in range(len(self._load())):
            rel = f"{SHARDS}/{k:07d}{suffix}"
            problem = self._problem(rel)
            if problem == _MISSING:
                continue
            if problem is not None:
                raise _damaged(rel, problem)
            yield k, rel

    def records(self) -> list[dict[str, Any]]:
        """Every record of the batches written so far, in item order; damage is an error."""
        out: list[dict[str, Any]] = []
        for k, rel in self._intact_shards(".json"):
            rows = self._rows(k)
            if rows is None:
                raise _damaged(rel, "its records are not this batch's images")
            out.extend(rows)
        return out

    def maps(self, method: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(item indices, maps) of one method, gathered from every shard, in item order."""
        ids: list[np.ndarray] = []
        maps: list[np.ndarray] = []
        for _, rel in self._intact_shards(".npz"):
            try:
                with np.load(self.out / rel, allow_pickle=False) as data:
                    if f"maps_{method}" in data:
                        ids.append(data["ids"])
                        maps.append(data[f"maps_{method}"])
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                raise _damaged(rel, type(exc).__name__) from exc
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
        return [self.put(name, data) for name, data in table_files(records, methods).items()]


def _what(problem: str) -> str:
    return problem if problem in (_MISSING, "not written by this audit") else f"damaged ({problem})"


def _read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when it is missing, unreadable or torn."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def _read_ledger(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The ledger's versions per file, latest last; torn or foreign lines are skipped."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return {}
    ledger: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        ok = (
            isinstance(e, dict)
            and isinstance(e.get("path"), str)
            and _OURS.fullmatch(e["path"]) is not None
            and type(e.get("size")) is int
            and isinstance(e.get("sha256"), str)
        )
        if ok:
            add_version(ledger, e)
    return ledger


def _fingerprint(config: Mapping[str, Any], items: Sequence[Item]) -> str:
    digest = hashlib.sha256(FORMAT.encode("ascii"))
    digest.update(json.dumps(config, sort_keys=True, default=str).encode("utf-8"))
    for item in items:
        digest.update(json.dumps(item.to_json(), sort_keys=True).encode("utf-8"))
    return digest.hexdigest()

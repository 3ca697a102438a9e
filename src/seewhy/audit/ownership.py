"""Which files in an audit folder are still exactly what seewhy wrote, and removing only those.

The ledger (``files.jsonl``) says what seewhy wrote: a name, a size, a SHA-256.
Anyone can write a ledger, so it is a claim, never a licence: a file is
seewhy's only while the file on disk is a plain file (not a link) at one of
seewhy's own names, directly in ``--out`` or in its real ``shards``/``images``
folder, with the listed size and checksum. Everything else, an edited
``results.csv`` included, is the user's and is neither removed nor written
over.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "TOP_LEVEL",
    "add_version",
    "existing",
    "in_the_way",
    "remove_if_unchanged",
    "unchanged",
]

#: The files a person opens (and may edit): never replaced unless still seewhy's.
TOP_LEVEL = ("index.html", "results.csv", "results.parquet", "summary.json")
_FOLDERS = ("shards", "images")
_BLOCK = 1 << 20


def add_version(ledger: dict[str, list[dict[str, Any]]], entry: dict[str, Any]) -> None:
    """``entry`` as the latest version of its file in ``ledger`` (once per size and checksum)."""
    versions = ledger.setdefault(entry["path"], [])
    key = (entry["size"], entry["sha256"])
    versions[:] = [v for v in versions if (v["size"], v["sha256"]) != key] + [entry]


def _parent_is_real(out: Path, rel: str) -> bool:
    """``rel``'s folder is ``out`` itself or a real (unlinked) sub-folder of seewhy's names."""
    head, _, _ = rel.rpartition("/")
    if not head:
        return True
    return head in _FOLDERS and not (out / head).is_symlink() and (out / head).is_dir()


def _identity(info: os.stat_result) -> tuple[int, int, int, int]:
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


Versions = Sequence[Mapping[str, Any]]  # what the ledger lists for one name: {size, sha256}


def _verify(out: Path, rel: str, versions: Versions) -> os.stat_result | None:
    """The file's ``fstat`` when it is one that seewhy wrote, unchanged; else None.

    Links are never followed, and only a version listed for that name counts.
    """
    if not _parent_is_real(out, rel):
        return None
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_NONBLOCK", 0)  # a FIFO planted at the name must not hang the run
    try:
        fd = os.open(out / rel, flags)
    except OSError:  # missing, a link (ELOOP), unreadable
        return None
    try:
        info = os.fstat(fd)
        sizes = {v.get("size") for v in versions}
        if not stat.S_ISREG(info.st_mode) or info.st_size not in sizes:
            return None
        digest = hashlib.sha256()
        while block := os.read(fd, _BLOCK):
            digest.update(block)
        found = (info.st_size, digest.hexdigest())
        return info if any((v.get("size"), v.get("sha256")) == found for v in versions) else None
    finally:
        os.close(fd)


def unchanged(out: Path, rel: str, versions: Versions) -> bool:
    """Whether ``out/rel`` is still a plain file seewhy wrote (size and SHA-256)."""
    return _verify(out, rel, versions) is not None


def remove_if_unchanged(out: Path, rel: str, versions: Versions) -> bool:
    """Remove ``out/rel`` when it is seewhy's unchanged file; True when it was removed.

    The file is checked through an open descriptor and removed only if the
    name still points at that same, unmodified file afterwards.
    """
    held = _verify(out, rel, versions)
    if held is None:
        return False
    try:
        now = os.stat(out / rel, follow_symlinks=False)
    except OSError:
        return False
    if _identity(now) != _identity(held) or not _parent_is_real(out, rel):
        return False
    (out / rel).unlink()
    return True


def existing(out: Path) -> set[str]:
    """Every name directly in ``out`` and in its real ``shards``/``images`` folders (links too)."""
    found: set[str] = set()
    for prefix, folder in [("", out), *((f"{n}/", out / n) for n in _FOLDERS)]:
        if prefix and (folder.is_symlink() or not folder.is_dir()):
            continue
        try:
            with os.scandir(folder) as entries:
                found.update(prefix + entry.name for entry in entries)
        except OSError:
            continue
    return found


def in_the_way(
    out: Path,
    planned: Iterable[str],
    ledger: Mapping[str, Versions],
    *,
    replacing_all: bool,
) -> list[str]:
    """Names this run will write where a file stands that seewhy may not replace.

    A file the ledger does not list is never replaced. A listed file that
    changed is replaced only when it is a shard or thumbnail being redone on
    a resume (``replacing_all`` False); a changed report or table never is,
    and ``--overwrite`` (``replacing_all``) replaces nothing that changed.
    """
    there = existing(out)
    blocked = []
    for rel in sorted(set(planned) & there):
        versions = ledger.get(rel)
        if not versions or not _replaceable(out / rel):
            blocked.append(rel)
        elif (replacing_all or rel in TOP_LEVEL) and not unchanged(out, rel, versions):
            blocked.append(rel)
    return blocked


def _replaceable(path: Path) -> bool:
    """A plain file or a link, which ``os.replace`` swaps without touching what a link points to."""
    try:
        mode = os.stat(path, follow_symlinks=False).st_mode
    except OSError:
        return True
    return stat.S_ISREG(mode) or stat.S_ISLNK(mode)

"""One audit at a time per folder: an advisory lock file inside ``--out``.

Why ``flock`` (``msvcrt.locking`` on Windows) and not a file made with
``O_CREAT | O_EXCL``: the kernel holds the lock for the open file and drops
it the moment the process ends, however it ends (``kill -9`` included). So a
lock left behind by a dead run is never mistaken for a live one, and no
guess from a pid (which the system recycles) or a clock is needed to take it
over. The pid, host and start time written into the file are only there to
tell the refused user which run holds the folder.

The file is removed when the run ends. A run that opened the file just
before it was removed would hold a lock on a name that no longer exists, so
after locking, the open file is compared with the one on disk and the lock
taken again if they differ.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from seewhy.errors import InvalidInput

__all__ = ["LOCK", "Lock", "hold"]

#: The lock's file name inside ``--out``; never listed in the ledger, never part of a report.
LOCK = ".seewhy-audit.lock"
_KIND = "seewhy-audit-lock"
_READ_TRIES = 20  # the holder writes its pid right after locking: wait up to ~0.2 s for it

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


@dataclass
class Lock:
    """A held lock; ``previous`` is what a dead run had written in the file, if anything."""

    path: Path
    fd: int
    created_folder: bool
    previous: dict[str, Any] | None = None

    def note(self) -> str | None:
        """One line for the run's notes when a lock of a run that died was taken over."""
        if self.previous is None:
            return None
        holder = _holder(self.previous)
        return f"took over the lock of an audit that is no longer running ({holder})"

    def release(self) -> None:
        """Remove the file (only while it is still ours), unlock, and remove a folder we made."""
        try:
            if _same_file(self.fd, self.path):
                self.path.unlink(missing_ok=True)
        finally:
            try:
                _unlock(self.fd)
            finally:
                os.close(self.fd)
        if self.created_folder:
            try:
                self.path.parent.rmdir()  # only when nothing else was written
            except OSError:
                pass


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def _read(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
        if sum(map(len, chunks)) > 65536:  # a lock file is ~150 bytes; never read a big one
            break
    return b"".join(chunks)


def _parse(blob: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(blob)
    except ValueError:
        return None
    return data if isinstance(data, dict) and data.get("kind") == _KIND else None


def _holder(info: dict[str, Any] | None) -> str:
    if info is None:
        return "its pid is not written yet"
    return f"pid {info.get('pid')} on {info.get('host')!r}, started {info.get('started')}"


def _open(path: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags, 0o644)
    except OSError as exc:
        what = "a link" if path.is_symlink() else (exc.strerror or type(exc).__name__)
        raise InvalidInput(
            f"out: cannot take the lock {str(path)!r} ({what}); remove it or choose another folder"
        ) from exc


def _busy(path: Path, fd: int) -> InvalidInput:
    """The refusal, naming the run that holds the lock (read again briefly if not written yet)."""
    info = None
    for _ in range(_READ_TRIES):
        try:
            info = _parse(_read(fd))
        except OSError:  # Windows refuses to read a locked byte: the pid stays unknown
            break
        if info is not None:
            break
        time.sleep(0.01)
    return InvalidInput(
        f"out: {str(path.parent)!r} is in use by another seewhy audit ({_holder(info)}); "
        "wait for it to finish or choose another --out"
    )


def acquire(out: Path) -> Lock:
    """Lock ``out`` (made if missing) for this process, or raise the one-line refusal."""
    try:
        out.mkdir(parents=True)
        created = True
    except FileExistsError:  # there already, or made by a run racing this one
        created = False
    if not out.is_dir():
        raise InvalidInput(f"out: expected a folder, got the file {str(out)!r}")
    path = out / LOCK
    try:
        for _ in range(100):  # the file was removed by its holder between open and lock: again
            fd = _open(path)
            if not _try_lock(fd):
                try:
                    raise _busy(path, fd)
                finally:
                    os.close(fd)
            if not _same_file(fd, path):
                _unlock(fd)
                os.close(fd)
                continue
            return _write_own(Lock(path, fd, created), _read(fd))
        raise InvalidInput(f"out: could not take the lock {str(path)!r}; try again")
    except BaseException:
        if created:
            try:
                out.rmdir()
            except OSError:
                pass
        raise


def _write_own(lock: Lock, found: bytes) -> Lock:
    """Write this run's pid, host and start; a file that is not a seewhy lock is refused."""
    previous = _parse(found)
    if found.strip() and previous is None:
        _unlock(lock.fd)
        os.close(lock.fd)
        raise InvalidInput(
            f"out: {str(lock.path)!r} is not a seewhy lock file; remove it or choose another folder"
        )
    lock.previous = previous
    mine = {
        "kind": _KIND,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    os.ftruncate(lock.fd, 0)
    os.lseek(lock.fd, 0, os.SEEK_SET)
    os.write(lock.fd, json.dumps(mine).encode("utf-8"))
    return lock


@contextmanager
def hold(out: str | os.PathLike[str]) -> Iterator[Lock]:
    """``with hold(out) as lock:`` this process alone writes to ``out`` until the block ends."""
    lock = acquire(Path(out))
    try:
        yield lock
    finally:
        lock.release()

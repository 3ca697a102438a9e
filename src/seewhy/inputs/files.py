"""Find the image files in the folders and files a user names, and say what was left out.

A folder walk meets more than pictures: named pipes and devices (opening one
can block or never end), links to nothing, folders named ``x.jpg``, formats
this Pillow cannot decode, and links that lead out of the folder (whose
pictures would end up in a report the user shares). Each of those is kept
in :attr:`Walk.skipped` with a one-line reason instead of vanishing.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "IMAGE_EXTENSIONS",
    "LINK_OUT",
    "Skipped",
    "Walk",
    "display_path",
    "iter_image_files",
    "safe_text",
    "walk_images",
]

#: File name endings that a folder is searched for (compared case-insensitively).
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
)

#: The reason given for a link out of the walked folder that was not followed.
LINK_OUT = "a link out of the data folder, not followed (follow_links)"

#: Picture formats a folder may hold that only some Pillow builds (or plugins) decode.
OPTIONAL_EXTENSIONS: frozenset[str] = frozenset({".avif", ".heic", ".heif", ".jxl"})


_UNSAFE = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (os.fsdecode's escape)
        return f"\\x{code - 0xDC00:02x}"
    return char.encode("unicode_escape").decode("ascii") if code < 0xD800 else f"\\u{code:04x}"


def safe_text(text: str) -> str:
    """``text`` on one line and encodable as UTF-8: control characters, line
    separators and undecodable bytes become backslash escapes (``caf\\xe9.jpg``).

    Why: names from a disk are bytes; one that is not UTF-8 would stop every
    JSON, CSV and HTML writer downstream, and a newline would split a note.
    """
    return _UNSAFE.sub(_escape, text)


def display_path(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """A path as text that is safe to print, store in JSON and show in a report."""
    raw = os.fspath(path)
    return safe_text(os.fsdecode(raw) if isinstance(raw, bytes) else raw)


@dataclass(frozen=True)
class Skipped:
    """An entry of a folder that looks like a picture but is not used, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Walk:
    """The image files found (sorted by path per argument) and what was left out."""

    files: tuple[Path, ...]
    skipped: tuple[Skipped, ...] = ()


def _decodable_extensions() -> frozenset[str]:
    """The optional endings this Pillow (with its plugins) registers a decoder for."""
    try:
        from PIL import Image

        known = Image.registered_extensions()
    except Exception:  # a broken Pillow must not stop a walk
        return frozenset()
    return frozenset(ext for ext in OPTIONAL_EXTENSIONS if ext in known)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _identity(path: Path) -> object:
    """What makes two paths the same file: (device, inode), or the path when it is missing."""
    try:
        info = path.stat()
    except OSError:
        return os.path.abspath(path)
    return (info.st_dev, info.st_ino)


def _special(mode: int) -> str | None:
    """What a non-regular, non-folder entry is, in words."""
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else "not a regular file"


class _Walker:
    """One walk: the files, the skipped entries, the folders already seen (link loops)."""

    def __init__(self, recursive: bool, follow_links: bool) -> None:
        self.recursive = recursive
        self.follow_links = follow_links
        self.optional = _decodable_extensions()
        self.files: list[Path] = []
        self.skipped: list[Skipped] = []
        self.seen_dirs: set[tuple[int, int]] = set()  # (device, inode): no realpath per folder

    def looks_like_image(self, name: str) -> bool:
        suffix = os.path.splitext(name)[1].lower()
        return suffix in IMAGE_EXTENSIONS or suffix in OPTIONAL_EXTENSIONS

    def folder(self, start: Path, root: str) -> None:
        """Walk ``start`` with a stack, not recursion: a tree can be deeper than Python's stack."""
        stack = [start]
        while stack:
            folder = stack.pop()
            try:
                info = folder.stat()
                if (info.st_dev, info.st_ino) in self.seen_dirs:
                    continue
                self.seen_dirs.add((info.st_dev, info.st_ino))
                with os.scandir(folder) as it:
                    entries = list(it)
            except OSError as exc:
                reason = f"a folder that cannot be read ({exc.strerror})"
                self.skipped.append(Skipped(folder, reason))
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                kind = self.entry(Path(entry.path), entry.is_symlink(), root)
                if kind == "file":
                    self.files.append(Path(entry.path))
                elif kind == "folder":
                    stack.append(Path(entry.path))

    def entry(self, path: Path, is_link: bool, root: str) -> str | None:
        """'file', 'folder' (to walk) or None (ignored, or recorded as skipped)."""
        name = path.name
        if is_link:
            target = os.path.realpath(path)
            if not os.path.exists(target):
                if self.looks_like_image(name):
                    self.skipped.append(Skipped(path, "a link to nothing (dangling link)"))
                return None
            if not _inside(target, root) and not self.follow_links:
                if self.looks_like_image(name) or os.path.isdir(target):
                    self.skipped.append(Skipped(path, LINK_OUT))
                return None
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            if self.looks_like_image(name):
                self.skipped.append(Skipped(path, f"cannot be read ({exc.strerror})"))
            return None
        if stat.S_ISDIR(mode):
            if self.looks_like_image(name):  # named like a picture: say it is not one
                walked = "; its pictures are walked" if self.recursive else ""
                self.skipped.append(Skipped(path, f"a folder, not an image file{walked}"))
            return "folder" if self.recursive else None
        if not self.looks_like_image(name):
            return None
        special = _special(mode)
        if special is not None:
            self.skipped.append(Skipped(path, f"{special}, not an image file"))
            return None
        suffix = path.suffix.lower()
        if suffix in OPTIONAL_EXTENSIONS and suffix not in self.optional:
            self.skipped.append(
                Skipped(path, f"a {suffix[1:].upper()} file, which this Pillow cannot decode")
            )
            return None
        return "file"


def walk_images(
    paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    recursive: bool = False,
    follow_links: bool = True,
    root: str | os.PathLike[str] | None = None,
) -> Walk:
    """Expand folders into their image files, and name what was left out.

    Folders give their files with an image ending (hidden entries skipped),
    sorted by path; ``recursive`` walks sub-folders too. A link counts as
    inside when it leads into ``root`` (default: the folder being walked);
    one that leads out is followed only with ``follow_links``. Files named
    explicitly are kept as given, even if missing, so the decoder can say
    what is wrong with them. A file reached twice is listed once.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    walker = _Walker(recursive, follow_links)
    for raw in paths:
        start = Path(raw)
        if start.is_dir():
            base = os.path.realpath(root if root is not None else start)
            first = len(walker.files)
            walker.folder(start, base)
            walker.files[first:] = sorted(walker.files[first:])  # by path, as before
        else:
            walker.files.append(start)
    out: list[Path] = []
    seen: set[object] = set()
    for p in walker.files:
        key = _identity(p)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return Walk(tuple(out), tuple(sorted(walker.skipped, key=lambda s: s.path)))


def iter_image_files(
    paths: Sequence[str | Path], recursive: bool = False, *, follow_links: bool = True
) -> list[Path]:
    """The files of :func:`walk_images`, for callers that do not report what was skipped.

    Parameters
    ----------
    paths : sequence of str or Path
        Files and folders.
    recursive : bool
        Look into sub-folders too.
    follow_links : bool
        Follow links that lead out of the given folders (each folder is visited once).

    Returns
    -------
    list of Path
        The image files, each once, in a stable order.
    """
    return list(walk_images(paths, recursive=recursive, follow_links=follow_links).files)

"""Find the image files in the folders and files a user names."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["IMAGE_EXTENSIONS", "iter_image_files"]

#: File name endings that a folder is searched for (compared case-insensitively).
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
)


def _is_visible_image(path: Path, root: Path) -> bool:
    """A file with an image extension and no hidden part below ``root``."""
    return (
        path.is_file()
        and path.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


def iter_image_files(paths: Sequence[str | Path], recursive: bool = False) -> list[Path]:
    """Expand folders into their image files, keeping explicitly named files as given.

    Folders contribute files whose extension is in :data:`IMAGE_EXTENSIONS`
    (hidden files skipped), sorted by path; with ``recursive`` subfolders are
    searched too. Files named explicitly are kept whatever their extension, and
    even if missing, so :func:`~seewhy.inputs.load_image` can report them.
    Arguments keep their order; a file reached twice is listed once.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            out.append(p)

    for raw in paths:
        root = Path(raw)
        if root.is_dir():
            pattern = root.rglob("*") if recursive else root.glob("*")
            for found in sorted(p for p in pattern if _is_visible_image(p, root)):
                add(found)
        else:
            add(root)
    return out

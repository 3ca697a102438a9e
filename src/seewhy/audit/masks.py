"""Which mask file belongs to which image: the same relative path, matched exactly.

Why exactly: a name is the user's data, not a pattern, so ``b*.jpg`` or
``[a].jpg`` must find the mask ``b*.png`` / ``[a].png`` and nothing else; and
an image outside the data folder (an absolute path in a list) has no mirrored
path, so it gets no mask rather than, through a path join, itself.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from seewhy.errors import InvalidInput
from seewhy.inputs.files import IMAGE_EXTENSIONS, display_path

__all__ = ["MaskFinder", "mirror_key"]


def mirror_key(path: Path, base: Path) -> str | None:
    """``path`` relative to ``base`` (posix), or None when it lies outside ``base``."""
    full = os.path.normpath(os.path.abspath(path))
    root = os.path.normpath(os.path.abspath(base))
    rel = os.path.relpath(full, root)
    if rel == os.curdir or rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return None
    return PurePosixPath(*Path(rel).parts).as_posix()


class MaskFinder:
    """Looks masks up in one folder, listing each sub-folder once."""

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise InvalidInput(
                f"masks: expected a folder of mask images, got {display_path(root)!r}"
            )
        self.root = root
        self._listings: dict[Path, frozenset[str]] = {}
        self._stems: dict[Path, dict[str, tuple[str, ...]]] = {}
        self.unmirrored = 0  # images with no relative path to mirror
        self.own = 0  # images whose only candidate was the image itself

    def _listing(self, folder: Path) -> frozenset[str]:
        if folder not in self._listings:
            try:
                self._listings[folder] = frozenset(os.listdir(folder))
            except OSError:
                self._listings[folder] = frozenset()
        return self._listings[folder]

    def _pictures_by_stem(self, folder: Path) -> dict[str, tuple[str, ...]]:
        """The folder's pictures grouped by stem, sorted: one pass per folder, not per image."""
        if folder not in self._stems:
            grouped: dict[str, list[str]] = {}
            for n in sorted(self._listing(folder)):
                stem, ext = os.path.splitext(n)
                if ext.lower() in IMAGE_EXTENSIONS:
                    grouped.setdefault(stem, []).append(n)
            self._stems[folder] = {stem: tuple(names) for stem, names in grouped.items()}
        return self._stems[folder]

    def find(self, key: str | None, image: Path) -> str | None:
        """The mask of the image whose mirrored path is ``key``, or None."""
        if key is None:
            self.unmirrored += 1
            return None
        parts = PurePosixPath(key).parts
        if not parts or any(p in ("..", "") for p in parts) or PurePosixPath(key).is_absolute():
            self.unmirrored += 1
            return None
        folder = self.root.joinpath(*parts[:-1])
        name = parts[-1]
        stem = os.path.splitext(name)[0]
        listing = self._listing(folder)
        others = self._pictures_by_stem(folder).get(stem, ())
        image_real = os.path.realpath(image)
        was_itself = False
        for candidate in [name, stem + ".png", *others]:
            full = folder / candidate
            if candidate not in listing or not full.is_file():
                continue
            if os.path.realpath(full) == image_real:
                was_itself = True
                continue
            return os.fspath(full)
        self.own += was_itself
        return None

    def notes(self) -> list[str]:
        """What the audit should say about images left without a mask for a reason."""
        out: list[str] = []
        if self.unmirrored:
            out.append(
                f"masks: {self.unmirrored} images lie outside the data folder, so no mask "
                "path mirrors theirs; no mask used for them"
            )
        if self.own:
            out.append(
                f"masks: for {self.own} images the only mask found was the image itself "
                "(is the masks folder the data folder?); no mask used for them"
            )
        return out

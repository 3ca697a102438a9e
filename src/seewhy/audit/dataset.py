"""What to audit: the image files, their true classes, and where the object is.

Three inputs are understood:

* a folder (or several paths) of images, walked recursively, no true class;
* a folder with one sub-folder per class, as Keras's
  ``image_dataset_from_directory`` expects: the sub-folder's name is the true
  class, matched to the model's labels by name (case, ``_`` and ``-``
  ignored), by number (``007`` is class 7), or, when no name matches and the
  counts agree, by sorted folder order (the index Keras would have given it);
* a list file (``.txt``, ``.csv``, ``.tsv``, ``.lst``): one path per line,
  optionally followed by a tab or comma and the true class; a CSV may have a
  header naming ``path``/``file`` and ``label``/``class`` columns. Relative
  paths are read from the list file's folder.

Object locations come from ``boxes`` (see :mod:`seewhy.audit.boxes`) or
``masks``: a folder mirroring the images' paths relative to the data folder
(the list file's folder, or the current folder for several paths), one mask
image each, non-zero = object, matched by exact name, never by pattern.

File names are bytes on disk: an item's ``path`` and ``name`` are safe text
for the report (``caf\\xe9.jpg``), and :attr:`Item.file` the exact file to open.
Entries of a folder that look like pictures but cannot be (pipes, devices,
dangling links, folders named ``x.jpg``, formats this Pillow cannot decode)
become items with a ``skipped`` reason, reported as unreadable; a link out of
the data folder is followed only with ``follow_links``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from seewhy.errors import InvalidInput
from seewhy.inputs.files import (
    IMAGE_EXTENSIONS,
    LINK_OUT,
    Skipped,
    display_path,
    safe_text,
    walk_images,
)

from .boxes import Box, load_boxes, read_boxes
from .list_files import LIST_SUFFIXES, read_list
from .masks import MaskFinder, mirror_key

__all__ = ["Box", "Dataset", "Item", "LabelsFrom", "collect", "load_boxes", "match_classes"]

LabelsFrom = Literal["auto", "folders", "none"]
DataArg = str | bytes | os.PathLike[str] | Sequence[str | bytes | os.PathLike[str]]


def _to_hex(text: str) -> str:
    try:
        return os.fsencode(text).hex()
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").hex()


def _from_hex(data: str) -> str:
    return os.fsdecode(bytes.fromhex(data))


@dataclass(frozen=True)
class Item:
    """One image to audit; ``index`` is its stable position in the audit.

    ``path`` and ``name`` are safe text; ``os_path`` is the exact name on
    disk when it is not (bytes that are not UTF-8, control characters);
    ``skipped`` is why the entry is listed but not opened.

    Attributes
    ----------
    index : int
        Its position in the audit, the ``index`` of ``results.csv``.
    path : str
        The file, as safe text for the report.
    name : str
        Its name in the report (the path relative to the data folder).
    true_label : str or None
        Its true class as the data named it (a folder, a list column).
    true_index : int or None
        That class's index among the model's labels; None when unknown.
    boxes : tuple of Box
        The object's boxes in the original picture's pixels.
    mask : str or None
        The object's mask image, when a masks folder has one for it.
    os_path : str or None
        The exact name on disk, when ``path`` could not show it.
    skipped : str or None
        Why the entry is listed but not opened (a pipe, an undecodable file).
    """

    index: int
    path: str
    name: str
    true_label: str | None = None
    true_index: int | None = None
    boxes: tuple[Box, ...] = ()
    mask: str | None = None
    os_path: str | None = None
    skipped: str | None = None

    @property
    def file(self) -> str:
        """The file to open (``path`` unless the name on disk is not safe text)."""
        return self.os_path if self.os_path is not None else self.path

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "path": self.path,
            "name": self.name,
            "true_label": self.true_label,
            "true_index": self.true_index,
            "boxes": [list(b) for b in self.boxes],
            "mask": None if self.mask is None else display_path(self.mask),
        }
        if self.mask is not None and display_path(self.mask) != self.mask:
            out["mask_bytes"] = _to_hex(self.mask)
        if self.os_path is not None:  # only then, so older manifests keep their fingerprint
            out["path_bytes"] = _to_hex(self.os_path)
        if self.skipped is not None:
            out["skipped"] = self.skipped
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Item:
        boxes = tuple(tuple(float(v) for v in b) for b in data.get("boxes", ()))
        mask = data.get("mask")
        if data.get("mask_bytes"):
            mask = _from_hex(data["mask_bytes"])
        return cls(
            index=int(data["index"]),
            path=str(data["path"]),
            name=str(data["name"]),
            true_label=data.get("true_label"),
            true_index=data.get("true_index"),
            boxes=boxes,  # type: ignore[arg-type]
            mask=mask,
            os_path=_from_hex(data["path_bytes"]) if data.get("path_bytes") else None,
            skipped=data.get("skipped"),
        )


@dataclass(frozen=True)
class Dataset:
    """The items in audit order, and how their true classes were found.

    Attributes
    ----------
    items : tuple of Item
        Every entry found, in audit order, the skipped ones included.
    layout : str
        ``"files"``, ``"folders"`` (one sub-folder per class) or ``"list"``.
    class_rule : str or None
        How true classes were matched to the model's labels: ``"name"``,
        ``"index"``, ``"folder order"`` or None.
    notes : tuple of str
        One line for each thing the report should say (links left out,
        classes that match no label, boxes that match no image).
    """

    items: tuple[Item, ...]
    layout: str  # "files", "folders" or "list"
    class_rule: str | None = None  # "name", "index", "folder order" or None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def has_truth(self) -> bool:
        return any(item.true_label is not None for item in self.items)


@dataclass(frozen=True)
class _Entry:
    """One file found: where it is, its mask key (None: no mirror), its name, its class."""

    file: Path
    key: str | None
    name: str
    cls: str | None = None
    skipped: str | None = None


# --------------------------------------------------------------------------- classes


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[_\-]+", " ", text).lower().split())


def match_classes(
    names: Sequence[str], labels: Sequence[str] | None
) -> tuple[dict[str, int | None], str | None]:
    """Class index for each folder/label name, and the rule that matched them.

    Name matches win, then numbers; if nothing matched and the model's class
    count equals the number of names (or the model has no labels), the sorted
    order is used, as Keras numbers the classes of a folder tree.
    """
    lookup: dict[str, int] = {}
    for i, label in enumerate(labels or ()):
        lookup.setdefault(_norm(label), i)
    out: dict[str, int | None] = {}
    rules: set[str] = set()
    for name in names:
        key = _norm(name)
        if key in lookup:
            out[name] = lookup[key]
            rules.add("name")
        elif name.strip().isdigit() and (labels is None or int(name) < len(labels)):
            out[name] = int(name)
            rules.add("index")
        else:
            out[name] = None
    if not rules and names and (labels is None or len(labels) == len(set(names))):
        for i, name in enumerate(sorted(set(names))):
            out[name] = i
        return out, "folder order"
    return out, " and ".join(sorted(rules)) or None


# --------------------------------------------------------------------------- walking


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _class_dirs(root: Path, follow_links: bool) -> tuple[list[Path], list[Skipped]]:
    """The class folders, and those that are links out of ``root`` not followed."""
    real_root = os.path.realpath(root)
    dirs: list[Path] = []
    out: list[Skipped] = []
    for p in sorted(root.iterdir()):
        if p.name.startswith(".") or not p.is_dir():
            continue
        if p.is_symlink() and not follow_links and not _inside(os.path.realpath(p), real_root):
            out.append(Skipped(p, LINK_OUT))
        else:
            dirs.append(p)
    return dirs, out


def _looks_like_classes(root: Path, follow_links: bool) -> bool:
    """Sub-folders hold the images and the top level holds none."""
    if any(p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS for p in root.iterdir()):
        return False
    dirs, _ = _class_dirs(root, follow_links)
    return any(
        walk_images([d], recursive=True, follow_links=follow_links, root=root).files for d in dirs
    )


def _skipped_entries(
    skipped: Sequence[Skipped], base: Path | None, cls: str | None
) -> list[_Entry]:
    """Items for what the walk left out (links out stay out), named like the files."""
    return [
        _Entry(
            s.path, None, display_path(_relative(s.path, base) if base else s.path), cls, s.reason
        )
        for s in skipped
        if s.reason != LINK_OUT
    ]


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _as_paths(data: DataArg) -> list[Path]:
    if isinstance(data, (str, bytes, os.PathLike)):
        data = [data]
    return [Path(os.fsdecode(p)) for p in data]


def _walk(
    paths: list[Path], labels_from: LabelsFrom, recursive: bool, follow_links: bool
) -> tuple[str, list[_Entry], list[Skipped]]:
    """The layout, the files found, and what was left out."""
    single = paths[0] if len(paths) == 1 else None
    entries: list[_Entry] = []
    left: list[Skipped] = []
    if (
        single is not None
        and single.is_dir()
        and labels_from != "none"
        and (labels_from == "folders" or _looks_like_classes(single, follow_links))
    ):
        dirs, left = _class_dirs(single, follow_links)
        for folder in dirs:
            walk = walk_images([folder], recursive=True, follow_links=follow_links, root=single)
            for f in walk.files:
                rel = _relative(f, single)
                entries.append(_Entry(f, rel, display_path(rel), folder.name))
            entries += _skipped_entries(walk.skipped, single, folder.name)
            left += walk.skipped
        if not entries:
            raise InvalidInput(f"data: no images in the class folders of {display_path(single)!r}")
        return "folders", entries, left
    if single is not None and single.is_file() and single.suffix.lower() in LIST_SUFFIXES:
        base = single.parent
        for raw, label in read_list(single):
            p = Path(raw)
            full = p if p.is_absolute() else base / p
            cls = label if labels_from != "none" else None
            entries.append(_Entry(full, mirror_key(full, base), display_path(raw), cls))
        return "list", entries, left
    for p in paths:
        if not p.exists():
            raise InvalidInput(f"data: no such file or folder {display_path(p)!r}")
    cwd = Path.cwd()
    for p in paths:
        root = p if p.is_dir() else p.parent
        walk = walk_images([p], recursive=recursive, follow_links=follow_links)
        for f in walk.files:
            if single is not None:
                rel = _relative(f, root)
                entries.append(_Entry(f, rel, display_path(rel)))
            else:
                entries.append(_Entry(f, mirror_key(f, cwd), display_path(f.as_posix())))
        entries += _skipped_entries(walk.skipped, root if single is not None else None, None)
        left += walk.skipped
    return "files", entries, left


def _walk_notes(left: Sequence[Skipped], follow_links: bool) -> list[str]:
    notes: list[str] = []
    links = [s for s in left if s.reason == LINK_OUT]
    other = [s for s in left if s.reason != LINK_OUT]
    if other:
        shown = "; ".join(f"{display_path(s.path.name)!r}: {s.reason}" for s in other[:3])
        more = f"; and {len(other) - 3} more" if len(other) > 3 else ""
        notes.append(
            f"{len(other)} entries look like pictures but cannot be read as images "
            f"(listed as unreadable): {shown}{more}"
        )
    if links and not follow_links:
        shown = ", ".join(repr(display_path(s.path.name)) for s in links[:3])
        more = f" and {len(links) - 3} more" if len(links) > 3 else ""
        notes.append(
            f"{len(links)} links lead out of the data folder and were not followed, so "
            f"their pictures stay out of the report: {shown}{more}; pass follow_links=True "
            "(--follow-links) to include them"
        )
    return notes


def collect(
    data: DataArg,
    *,
    labels: Sequence[str] | None = None,
    labels_from: LabelsFrom = "auto",
    recursive: bool = True,
    boxes: str | os.PathLike[str] | None = None,
    masks: str | os.PathLike[str] | None = None,
    follow_links: bool = False,
) -> Dataset:
    """Walk ``data`` into audit items (see the module docstring for the forms).

    ``follow_links`` follows links that lead out of the data folder; off by
    default because their pictures would end up in a report that is shared.

    Parameters
    ----------
    data : str, path or sequence of them
        A folder, a list file, or several image files and folders.
    labels : sequence of str, optional
        The model's class names, which folder and list classes are matched to.
    labels_from : str
        ``"auto"`` (a folder's sub-folders are classes when it holds no image
        itself), ``"folders"`` (they are) or ``"none"`` (no true classes, a
        list file's class column ignored too).
    recursive : bool
        Walk sub-folders of plain image folders too.
    boxes : str or path, optional
        A JSON or CSV file of object boxes in the original pictures' pixels
        (see :mod:`seewhy.audit.boxes`).
    masks : str or path, optional
        A folder of object masks mirroring the images' paths.
    follow_links : bool
        Follow links that lead out of the data folder.

    Returns
    -------
    Dataset
        The items and what was noticed while finding them.

    Raises
    ------
    InvalidInput
        No image found, or a setting seewhy cannot read.
    """
    if labels_from not in ("auto", "folders", "none"):
        raise InvalidInput(
            f"labels_from: expected 'auto', 'folders' or 'none', got {labels_from!r}"
        )
    paths = _as_paths(data)
    if not paths:
        raise InvalidInput("data: expected a folder, a list file or image files, got nothing")
    layout, entries, left = _walk(paths, labels_from, recursive, follow_links)
    if not entries:
        raise InvalidInput("data: no image files found in the given paths")

    class_names = sorted({safe_text(e.cls) for e in entries if e.cls is not None})
    mapping, rule = match_classes(class_names, labels) if class_names else ({}, None)
    notes = _walk_notes(left, follow_links)
    unmatched = [c for c in class_names if mapping.get(c) is None]
    if unmatched:
        shown = ", ".join(repr(c) for c in unmatched[:5])
        more = f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else ""
        notes.append(
            f"{len(unmatched)} true class name(s) match no model label: {shown}{more}; "
            "those images count as 'unknown truth' in the accuracy"
        )
    box_file = read_boxes(boxes) if boxes is not None else None
    box_table = box_file.table if box_file is not None else {}
    notes += box_file.notes if box_file is not None else ()
    finder = MaskFinder(Path(os.fsdecode(masks))) if masks is not None else None
    by_base = _basename_index(box_table)
    items: list[Item] = []
    used_keys: set[str] = set()
    for i, e in enumerate(entries):
        cls = safe_text(e.cls) if e.cls is not None else None
        index = mapping.get(cls) if cls is not None else None
        true_label = cls
        if index is not None and labels is not None and index < len(labels):
            true_label = labels[index]
        key = _box_key(box_table, by_base, e)
        if key is not None:
            used_keys.add(key)
        shown = display_path(e.file)
        items.append(
            Item(
                index=i,
                path=shown,
                name=e.name,
                true_label=true_label,
                true_index=index,
                boxes=tuple(box_table[key]) if key is not None else (),
                mask=finder.find(e.key, e.file) if finder is not None and not e.skipped else None,
                os_path=os.fspath(e.file) if shown != os.fspath(e.file) else None,
                skipped=e.skipped,
            )
        )
    if box_table and len(used_keys) < len(box_table):
        notes.append(f"{len(box_table) - len(used_keys)} entries of the boxes file match no image")
    if finder is not None:
        notes += finder.notes()
    return Dataset(items=tuple(items), layout=layout, class_rule=rule, notes=tuple(notes))


# --------------------------------------------------------------------------- boxes


def _basename_index(table: Mapping[str, list[Box]]) -> dict[str, str]:
    """File name -> key, for names that occur once, so boxes keyed by name still match."""
    counts: dict[str, int] = {}
    for key in table:
        base = Path(key).name
        counts[base] = counts.get(base, 0) + 1
    return {Path(k).name: k for k in table if counts[Path(k).name] == 1}


def _box_key(table: Mapping[str, list[Box]], by_base: Mapping[str, str], e: _Entry) -> str | None:
    """The key of the box table that names this entry's file (exact strings only)."""
    if not table or e.skipped:
        return None
    for key in (e.name, e.key, os.fspath(e.file), e.file.as_posix(), display_path(e.file)):
        if key is not None and key in table:
            return key
    return by_base.get(e.file.name) or by_base.get(display_path(e.file.name))

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

Object locations come from ``boxes`` (JSON or CSV, pixel coordinates of the
original image, or fractions when all four are <= 1) or ``masks`` (a folder
mirroring the images' relative paths with one mask image each, non-zero =
object).
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from seewhy.errors import InvalidInput
from seewhy.inputs import IMAGE_EXTENSIONS, iter_image_files

__all__ = ["Box", "Dataset", "Item", "LabelsFrom", "collect", "match_classes"]

Box = tuple[float, float, float, float]
LabelsFrom = Literal["auto", "folders", "none"]

LIST_SUFFIXES = frozenset({".txt", ".csv", ".tsv", ".lst"})
_PATH_COLUMNS = ("path", "file", "filename", "image", "source")
_LABEL_COLUMNS = ("label", "class", "true", "true_label", "target", "y")
_BOX_COLUMNS = (("x0", "y0", "x1", "y1"), ("xmin", "ymin", "xmax", "ymax"))


@dataclass(frozen=True)
class Item:
    """One image to audit; ``index`` is its stable position in the audit."""

    index: int
    path: str
    name: str
    true_label: str | None = None
    true_index: int | None = None
    boxes: tuple[Box, ...] = ()
    mask: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "path": self.path,
            "name": self.name,
            "true_label": self.true_label,
            "true_index": self.true_index,
            "boxes": [list(b) for b in self.boxes],
            "mask": self.mask,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Item:
        return cls(
            index=int(data["index"]),
            path=str(data["path"]),
            name=str(data["name"]),
            true_label=data.get("true_label"),
            true_index=data.get("true_index"),
            boxes=tuple(tuple(float(v) for v in b) for b in data.get("boxes", ())),  # type: ignore[misc]
            mask=data.get("mask"),
        )


@dataclass(frozen=True)
class Dataset:
    """The items in audit order, and how their true classes were found."""

    items: tuple[Item, ...]
    layout: str  # "files", "folders" or "list"
    class_rule: str | None = None  # "name", "index", "folder order" or None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def has_truth(self) -> bool:
        return any(item.true_label is not None for item in self.items)


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


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _looks_like_classes(root: Path) -> bool:
    """Sub-folders hold the images and the top level holds none."""
    if any(p.is_file() and _is_image(p) for p in root.iterdir()):
        return False
    dirs = _class_dirs(root)
    return bool(dirs) and any(iter_image_files([d], recursive=True) for d in dirs)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _read_list(path: Path) -> list[tuple[str, str | None]]:
    """(path, label or None) per line of a list file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"data: cannot read list file {str(path)!r} ({exc})") from exc
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return []
    delimiter = "\t" if "\t" in lines[0] or path.suffix.lower() == ".tsv" else ","
    rows = [[c.strip() for c in row] for row in csv.reader(lines, delimiter=delimiter)]
    header = [c.lower() for c in rows[0]]
    path_col, label_col = 0, 1
    if any(c in _PATH_COLUMNS for c in header):
        path_col = next(i for i, c in enumerate(header) if c in _PATH_COLUMNS)
        label_col = next((i for i, c in enumerate(header) if c in _LABEL_COLUMNS), -1)
        rows = rows[1:]
    out: list[tuple[str, str | None]] = []
    for row in rows:
        if len(row) <= path_col or not row[path_col]:
            continue
        label = row[label_col] if 0 <= label_col < len(row) and row[label_col] else None
        out.append((row[path_col], label))
    return out


def collect(
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    labels: Sequence[str] | None = None,
    labels_from: LabelsFrom = "auto",
    recursive: bool = True,
    boxes: str | os.PathLike[str] | None = None,
    masks: str | os.PathLike[str] | None = None,
) -> Dataset:
    """Walk ``data`` into audit items (see the module docstring for the forms)."""
    if labels_from not in ("auto", "folders", "none"):
        raise InvalidInput(
            f"labels_from: expected 'auto', 'folders' or 'none', got {labels_from!r}"
        )
    paths = [Path(data)] if isinstance(data, (str, os.PathLike)) else [Path(p) for p in data]
    if not paths:
        raise InvalidInput("data: expected a folder, a list file or image files, got nothing")
    entries: list[tuple[Path, str, str | None]] = []  # (file, display name, class name)
    layout = "files"
    single = paths[0] if len(paths) == 1 else None
    if (
        single is not None
        and single.is_dir()
        and labels_from != "none"
        and (labels_from == "folders" or _looks_like_classes(single))
    ):
        layout = "folders"
        for folder in _class_dirs(single):
            for f in iter_image_files([folder], recursive=True):
                entries.append((f, _relative(f, single), folder.name))
        if not entries:
            raise InvalidInput(f"data: no images in the class folders of {str(single)!r}")
    elif single is not None and single.is_file() and single.suffix.lower() in LIST_SUFFIXES:
        layout = "list"
        base = single.parent
        for raw, label in _read_list(single):
            p = Path(raw)
            full = p if p.is_absolute() else base / p
            entries.append((full, raw, label if labels_from != "none" else None))
    else:
        for p in paths:
            if not p.exists():
                raise InvalidInput(f"data: no such file or folder {str(p)!r}")
        for p in paths:
            root = p if p.is_dir() else p.parent
            for f in iter_image_files([p], recursive=recursive):
                name = _relative(f, root) if len(paths) == 1 else f.as_posix()
                entries.append((f, name, None))
    if not entries:
        raise InvalidInput("data: no image files found in the given paths")

    class_names = sorted({c for _, _, c in entries if c is not None})
    mapping, rule = match_classes(class_names, labels) if class_names else ({}, None)
    notes: list[str] = []
    unmatched = [c for c in class_names if mapping.get(c) is None]
    if unmatched:
        shown = ", ".join(repr(c) for c in unmatched[:5])
        more = f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else ""
        notes.append(
            f"{len(unmatched)} true class name(s) match no model label: {shown}{more}; "
            "those images count as 'unknown truth' in the accuracy"
        )
    box_table = load_boxes(boxes) if boxes is not None else {}
    mask_root = Path(masks) if masks is not None else None
    if mask_root is not None and not mask_root.is_dir():
        raise InvalidInput(f"masks: expected a folder of mask images, got {str(mask_root)!r}")
    by_base = _basename_index(box_table)
    items: list[Item] = []
    used_boxes = 0
    for i, (f, name, cls) in enumerate(entries):
        index = mapping.get(cls) if cls is not None else None
        true_label = cls
        if index is not None and labels is not None and index < len(labels):
            true_label = labels[index]
        found = _boxes_for(box_table, by_base, f, name)
        used_boxes += bool(found)
        items.append(
            Item(
                index=i,
                path=os.fspath(f),
                name=name,
                true_label=true_label,
                true_index=index,
                boxes=found,
                mask=_mask_for(mask_root, name) if mask_root is not None else None,
            )
        )
    if box_table and used_boxes < len(box_table):
        notes.append(f"{len(box_table) - used_boxes} entries of the boxes file match no image")
    return Dataset(items=tuple(items), layout=layout, class_rule=rule, notes=tuple(notes))


# --------------------------------------------------------------------------- boxes, masks


def _box(values: Iterable[Any], where: str) -> Box:
    try:
        x0, y0, x1, y1 = (float(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"boxes: {where}: expected [x0, y0, x1, y1], got {values!r}") from exc
    if x1 < x0 or y1 < y0:
        raise InvalidInput(f"boxes: {where}: expected x0 <= x1 and y0 <= y1, got {values!r}")
    return (x0, y0, x1, y1)


def _json_boxes(data: Any) -> dict[str, list[Box]]:
    table: dict[str, list[Box]] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            many = value if value and isinstance(value[0], (list, tuple)) else [value]
            table[str(key)] = [_box(b, str(key)) for b in many if b]
        return table
    if isinstance(data, list):
        for entry in data:
            if not isinstance(entry, dict):
                raise InvalidInput("boxes: expected objects with a 'file' and a 'box'")
            key = next((str(entry[c]) for c in _PATH_COLUMNS if c in entry), None)
            if key is None:
                raise InvalidInput("boxes: an entry has no 'file' or 'path'")
            if "boxes" in entry:
                table.setdefault(key, []).extend(_box(b, key) for b in entry["boxes"])
            elif "box" in entry:
                table.setdefault(key, []).append(_box(entry["box"], key))
            else:
                cols = next((c for c in _BOX_COLUMNS if all(k in entry for k in c)), None)
                if cols is None:
                    raise InvalidInput(f"boxes: {key}: expected 'box' or x0, y0, x1, y1")
                table.setdefault(key, []).append(_box([entry[k] for k in cols], key))
        return table
    raise InvalidInput("boxes: expected a JSON object {file: [x0, y0, x1, y1]} or a list")


def load_boxes(path: str | os.PathLike[str]) -> dict[str, list[Box]]:
    """Boxes per file key from a JSON or CSV file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInput(f"boxes: cannot read {str(p)!r} ({exc.strerror})") from exc
    if p.suffix.lower() == ".json":
        try:
            return _json_boxes(json.loads(text))
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"boxes: {p.name} is not valid JSON ({exc.msg})") from exc
    reader = csv.DictReader(text.splitlines())
    fields = {f.lower(): f for f in reader.fieldnames or ()}
    key_col = next((fields[c] for c in _PATH_COLUMNS if c in fields), None)
    cols = next((c for c in _BOX_COLUMNS if all(k in fields for k in c)), None)
    if key_col is None or cols is None:
        raise InvalidInput(
            f"boxes: {p.name}: expected CSV columns file (or path) and x0, y0, x1, y1"
        )
    table: dict[str, list[Box]] = {}
    for n, row in enumerate(reader, start=2):
        key = row[key_col]
        table.setdefault(key, []).append(_box([row[fields[k]] for k in cols], f"line {n}"))
    return table


def _basename_index(table: Mapping[str, list[Box]]) -> dict[str, str]:
    """File name -> key, for names that occur once, so boxes keyed by name still match."""
    counts: dict[str, int] = {}
    for key in table:
        base = Path(key).name
        counts[base] = counts.get(base, 0) + 1
    return {Path(k).name: k for k in table if counts[Path(k).name] == 1}


def _boxes_for(
    table: Mapping[str, list[Box]], by_base: Mapping[str, str], path: Path, name: str
) -> tuple[Box, ...]:
    if not table:
        return ()
    for key in (name, os.fspath(path), path.as_posix()):
        if key in table:
            return tuple(table[key])
    unique = by_base.get(path.name)
    return tuple(table[unique]) if unique is not None else ()


def _mask_for(root: Path, name: str) -> str | None:
    rel = Path(name)
    candidates = [root / rel, root / rel.with_suffix(".png")]
    candidates += [p for p in (root / rel.parent).glob(rel.stem + ".*") if _is_image(p)]
    for c in candidates:
        if c.is_file():
            return os.fspath(c)
    return None

"""What a stored Keras file holds, read before Keras loads it (nothing in it is run).

Two kinds of cost hide in a small ``.keras`` file, and both are checked here
from what the file declares, before anything is unpacked:

* **size**: a zip member may declare far more bytes than it stores; 2 MB
  holding 2 GiB of zeros cost 36 s and 5.6 GiB before Keras refused it (its
  own guard starts at 4 GiB). Keras stores its members uncompressed (ratio
  1:1), so a member or an archive that unpacks to more than
  :data:`MAX_RATIO` times its stored size (beyond small floors), more than
  :data:`MAX_MEMBERS` members, names given twice, or a config larger than
  :data:`MAX_CONFIG` is refused in one line. A genuine model, however large,
  stores what it declares, so its size is only bounded by the file's own.
* **code and files**: the config is searched for what runs code or reads
  the user's files when loaded: Lambda layers and marshalled Python
  functions, a pickled torch module (``TorchModuleWrapper``), a vocabulary
  read from a file path (``StringLookup`` and the other lookup layers), a
  ``TFSMLayer`` loading an external SavedModel. Each is named as what it is.
"""

from __future__ import annotations

import json
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from ...errors import InvalidInput
from ..common import one_line

__all__ = [
    "MAX_CONFIG",
    "MAX_MEMBERS",
    "MAX_RATIO",
    "check_archive",
    "needs_trust",
    "stored_config",
]

#: Most bytes a member (or the whole archive) may unpack to per stored byte.
#: Keras writes 1:1; 100 leaves room for a recompressed archive of sparse weights
#: (DEFLATE reaches ~1032:1 on zeros).
MAX_RATIO = 100
#: Below these a member, or the whole archive, is never refused for its ratio
#: (a small model's JSON recompressed with zip -9 reaches 20:1 and more).
MEMBER_FLOOR = 16 << 20
ARCHIVE_FLOOR = 64 << 20
#: A Keras archive holds a config, metadata, weights and a few assets.
MAX_MEMBERS = 10_000
#: The largest configs of real models are a few MB; this one is parsed in memory.
MAX_CONFIG = 64 << 20

_CONFIG = "config.json"
_REPAIR = "re-save it with Keras (model.save), which stores its files as they are"
_LAMBDA_CLASSES = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda"})
_SHOWN = 60  # characters of a name or path from the file shown in a message


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # not reached


def check_archive(path: Path, archive: zipfile.ZipFile) -> None:
    """Refuse, in one line, an archive whose declared contents no real Keras model has.

    Only the zip's directory is read: the sizes it declares are the most that
    Python's zip reader (used by Keras too) will unpack, so bounding them
    bounds the cost of every later read.
    """
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise InvalidInput(
            f"model: {path.name} holds {len(members):,} files, more than the {MAX_MEMBERS:,} a "
            f"Keras archive is read with; {_REPAIR}"
        )
    names = Counter(m.filename.lstrip("/") for m in members)
    twice = next((name for name, count in names.items() if count > 1), None)
    if twice is not None:
        raise InvalidInput(
            f"model: {path.name} holds {names[twice]} files named {_shown(twice)}, so what is "
            f"checked need not be what Keras reads; {_REPAIR}"
        )
    for member in members:
        declared, stored = member.file_size, max(member.compress_size, 1)
        if declared > MEMBER_FLOOR and declared > MAX_RATIO * stored:
            raise InvalidInput(
                f"model: {path.name}'s {_shown(member.filename)} declares {_size(declared)} "
                f"stored in {_size(stored)} ({declared // stored:,}:1; Keras stores 1:1), a "
                f"decompression bomb: refused before unpacking; if the file is yours, {_REPAIR}"
            )
    total, on_disk = sum(m.file_size for m in members), max(path.stat().st_size, 1)
    if total > ARCHIVE_FLOOR and total > MAX_RATIO * on_disk:
        raise InvalidInput(
            f"model: {path.name} declares {_size(total)} of contents in {_size(on_disk)} "
            f"({total // on_disk:,}:1; Keras stores 1:1), a decompression bomb: refused before "
            f"unpacking; if the file is yours, {_REPAIR}"
        )


def stored_config(path: Path) -> Any:
    """The model config stored in a ``.keras`` archive or a legacy HDF5 file, parsed; None
    when the file has none (Keras then says why it cannot load it).

    The caller checks a ``.keras`` archive with :func:`check_archive` first. A config
    that is not JSON, or nests deeper than Python can parse, is an
    :class:`InvalidInput`: Keras could not read it either.
    """
    try:
        text = _config_text(path)
    except InvalidInput:
        raise
    except Exception as exc:  # not HDF5, not a zip, a config that is not text
        raise InvalidInput(
            f"model: {path.name} is not a loadable Keras model ({one_line(exc)})"
        ) from None
    if text is None:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: [[[[... nested past the stack
        reason = "nests too deeply" if isinstance(exc, RecursionError) else one_line(exc)
        raise InvalidInput(
            f"model: {path.name} is not a loadable Keras model (its config is not JSON Keras "
            f"can read: {reason})"
        ) from None


def _config_text(path: Path) -> str | None:
    if path.suffix.lower() in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
        if raw is None:
            return None
        return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
    if not zipfile.is_zipfile(path):
        return None  # Keras says why it cannot read the file
    with zipfile.ZipFile(path) as archive:
        found = [m for m in archive.infolist() if m.filename.lstrip("/") == _CONFIG]
        if not found:
            return None
        if found[0].file_size > MAX_CONFIG:
            raise InvalidInput(
                f"model: {path.name}'s config.json declares {_size(found[0].file_size)}, more "
                f"than the {_size(MAX_CONFIG)} a model config is read with; {_REPAIR}"
            )
        return archive.read(found[0]).decode("utf-8")


def needs_trust(config: Any) -> list[str]:
    """What in ``config`` runs code or reads the user's files when Keras loads it, each
    as a phrase that names it and says so (empty: nothing found)."""
    found: list[str] = []
    stack: list[tuple[Any, str | None]] = [(config, None)]  # (node, the layer it is in)
    while stack:
        node, layer = stack.pop()
        if isinstance(node, list):
            stack.extend((item, layer) for item in reversed(node))
            continue
        if not isinstance(node, dict):
            continue
        settings = node.get("config")
        settings = settings if isinstance(settings, dict) else {}
        name = settings.get("name")
        if "class_name" in node and isinstance(name, str):
            layer = name
        risks = _risks_of(node, settings, layer)
        if risks:  # what a risky object holds is its own code or data: said once
            found.extend(risks)
            continue
        stack.extend((value, layer) for value in reversed(list(node.values())))
    return found


def _risks_of(node: dict[str, Any], settings: dict[str, Any], layer: str | None) -> list[str]:
    """The risks one object of the config carries itself (not those of what it holds)."""
    kind = node.get("class_name")
    where = f"layer {_shown(layer)}" if layer else "the model"
    if kind in _LAMBDA_CLASSES or node.get("function_type") == "lambda":
        shown = _shown(layer or "?")
        return [f"a {kind or 'Lambda'} layer {shown} whose Python code runs when loaded"]
    if kind == "__lambda__":
        return [f"a marshalled Python function in {where} that runs when loaded"]
    if kind == "TorchModuleWrapper" and "module" in settings:
        return [
            f"a pickled torch module (TorchModuleWrapper {where}) whose unpickling runs code "
            "when loaded"
        ]
    if kind == "TFSMLayer":
        return [
            f"a TFSMLayer {where} that loads the external SavedModel "
            f"{_shown(str(settings.get('filepath', '?')))} (its graph runs when loaded)"
        ]
    vocabulary = settings.get("vocabulary")
    if isinstance(vocabulary, str):
        return [
            f"a {kind or 'lookup'} {where} whose vocabulary is read from the file path "
            f"{_shown(vocabulary)} outside the archive when loaded"
        ]
    return []


def _shown(text: str) -> str:
    """A name or path from the file, quoted with its control characters escaped, cut short."""
    cut = text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."
    return repr(cut)

"""A ``torch.export`` (.pt2) archive from elsewhere, made into one torch may load.

``torch.export.load`` unpickles some members with ``weights_only=False``
(weights and constants saved as pickles, the sample inputs after a
weights-only try fails, opaque and TorchScript objects) and loads
AOTInductor's native libraries. Checking members where they lie is not
enough: torch's zip reader (miniz) finds a name ignoring ASCII letter case,
takes one of two same-named entries, and may even read another central
directory than Python's :mod:`zipfile` does, so a check can read one member
while torch reads another. So torch never reads the user's file:

1. every entry's name must be plain ASCII, unique ignoring case, in one
   folder, and accounted for by the archive's layout (its models, their
   sample inputs, configs and the payloads those configs name, which must
   exist under exactly that name); anything else is refused;
2. a fresh archive is written with only those members: graphs once they call
   only tensor operators (:mod:`.exported_ops`), raw tensor bytes and text as
   they are, and every member torch unpickles replaced by ``torch.save`` of
   what torch's weights-only unpickler read from it.

So what torch unpickles without the allow-list is always a pickle torch wrote
of objects the allow-list let through, never bytes from the file.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from typing import IO, Any, Literal

import torch

from ..common import one_line
from .exported_ops import unsafe_graph

__all__ = ["NotAnExportArchive", "RefusedMember", "copy_for_torch", "unsafe_member"]

Kind = Literal["text", "graph", "raw", "pickle"]

# One path segment as torch.export.save writes them; nothing a zip reader could fold or normalise.
_SEGMENT = re.compile(r"[A-Za-z0-9_.-]+")
_NATIVE_SUFFIXES = (".so", ".dll", ".dylib", ".pyd")

# The current layout (torch/csrc/export/pt2_archive_constants.h and the zip writer's records),
# names relative to the archive's one folder.
_FIXED = frozenset(
    {"archive_format", "archive_version", "byteorder", "version", ".data/version"}
    | {".data/serialization_id"}
)
_MODEL = re.compile(r"models/([A-Za-z0-9_.-]+)\.json")
_EXTRA = "extra/"
_AOTINDUCTOR = "data/aotinductor/"
_TENSOR_CONSTANT = "tensor_"
_OBJECT_CONSTANTS = ("custom_obj_", "opaque_obj_")

# The layout before torch 2.8, which torch.export.load still reads (with Python's zipfile)
# whenever its reader of the current layout fails: files at the root, pickles named .pt and .json.
_LEGACY_GRAPH = "serialized_exported_program.json"
_LEGACY: dict[str, Kind] = {
    "version": "text",
    _LEGACY_GRAPH: "graph",
    **{f"serialized_{part}.pt": "pickle" for part in ("state_dict", "constants", "example_inputs")},
    **{f"serialized_{part}.json": "pickle" for part in ("state_dict", "constants")},
}
_LEGACY_EXTRA = "extra_files/"


class NotAnExportArchive(Exception):
    """A zip file that is no ``torch.export`` archive at all; the message says why."""


class RefusedMember(Exception):
    """A member (or name) torch could read as something other than what was checked."""

    def __init__(self, member: str, why: str) -> None:
        super().__init__(f"{member!r} {why}")
        self.member, self.why = member, why


def copy_for_torch(archive: zipfile.ZipFile, out: IO[bytes]) -> None:
    """Write to ``out`` the archive ``torch.export.load`` reads instead of ``archive``.

    Raises :class:`RefusedMember` or :class:`NotAnExportArchive` before torch
    unpickles anything (only torch's weights-only unpickler reads the file).
    """
    with zipfile.ZipFile(out, "w") as copy:
        for name, data in _vetted(archive):
            copy.writestr(name, data)


def unsafe_member(archive: zipfile.ZipFile) -> tuple[str, str] | None:
    """(member, why) for what keeps ``archive`` from being loaded untrusted, else None."""
    try:
        for _ in _vetted(archive):
            pass
    except RefusedMember as refused:
        return refused.member, refused.why
    return None


def _vetted(archive: zipfile.ZipFile) -> Iterator[tuple[str, bytes]]:
    """(name, bytes to write) of every member, once the whole layout is accounted for."""
    entries = _entries(archive)
    root = _root(entries)
    names = {name.removeprefix(root): info for name, info in entries.items()}

    def read_json(name: str) -> Any:
        try:
            return json.loads(archive.read(names[name]))
        except ValueError:
            raise RefusedMember(name, "is not JSON torch can read") from None

    try:
        plan = _legacy_plan(set(names)) if root == "" else _plan(set(names), read_json)
    except RefusedMember as refused:  # named as in the archive
        raise RefusedMember(root + refused.member, refused.why) from None
    for name, info in names.items():  # plan first: nothing is unpickled before it holds
        yield root + name, _vetted_bytes(root + name, plan[name], archive.read(info))


def _entries(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Every entry by name, once the names leave torch's reader no choice.

    miniz looks names up ignoring ASCII case and takes one of two equal
    names; non-ASCII bytes, NUL (where Python's zipfile cuts a name), empty,
    ``.`` or ``..`` segments and backslashes are refused, as no torch writer
    makes them and readers differ on them.
    """
    entries: dict[str, zipfile.ZipInfo] = {}
    folded: dict[str, str] = {}
    for info in archive.infolist():
        name = info.orig_filename
        segments = name.split("/")
        if not all(_SEGMENT.fullmatch(s) and s not in (".", "..") for s in segments):
            raise RefusedMember(
                name,
                "has a name torch's zip reader may read differently (only ASCII letters, "
                "digits, '_', '-' and '.' in folders separated by '/' are allowed)",
            )
        other = folded.setdefault(name.lower(), name)
        if other == name and name in entries:
            raise RefusedMember(name, "is in the archive twice; torch would read only one entry")
        if other != name:
            raise RefusedMember(
                name, f"and {other!r} are one name to torch's zip reader, which ignores letter case"
            )
        entries[name] = info
    if not entries:
        raise NotAnExportArchive("it is an empty zip file")
    return entries


def _root(entries: dict[str, zipfile.ZipInfo]) -> str:
    """The folder all members are in (torch takes the first entry's); '' for the old layout."""
    if _LEGACY_GRAPH in entries:
        return ""
    first = next(iter(entries))
    root = first.split("/", 1)[0] + "/"
    if "/" not in first or f"{root}archive_format" not in entries:
        raise NotAnExportArchive(
            "it has neither archive_format nor serialized_exported_program.json"
        )
    for name in entries:
        if not name.startswith(root):
            raise RefusedMember(name, f"is outside the archive's folder {root!r}")
    return root


def _plan(names: set[str], read_json: Callable[[str], Any]) -> dict[str, Kind]:
    """What torch.export.load does with each member of the current layout."""
    if "models/model.json" not in names:
        raise NotAnExportArchive("it has no models/model.json")
    plan: dict[str, Kind] = {name: "text" for name in names & _FIXED}
    for name in sorted(names):
        model = _MODEL.fullmatch(name)
        if model is None:
            continue
        plan[name] = "graph"
        plan[_required(names, f"data/sample_inputs/{model[1]}.pt", name)] = "pickle"
        for part in ("weights", "constants"):
            for member, kind in _payloads(names, part, model[1], name, read_json):
                if plan.setdefault(member, kind) != kind:
                    raise RefusedMember(
                        member, f"is read by torch both as {plan[member]} and {kind}"
                    )
    for name in sorted(names - plan.keys()):
        if name.startswith(_EXTRA):  # read as text only
            plan[name] = "text"
        elif name.startswith(_AOTINDUCTOR) or name.lower().endswith(_NATIVE_SUFFIXES):
            raise RefusedMember(name, "is compiled native code (AOTInductor)")
        else:
            raise RefusedMember(name, "is not part of a torch.export archive (nothing reads it)")
    return plan


def _payloads(
    names: set[str], part: str, model: str, graph: str, read_json: Callable[[str], Any]
) -> Iterator[tuple[str, Kind]]:
    """(member, kind) of the ``part`` (weights, constants) of ``model`` as torch reads them."""
    folder = f"data/{part}/"
    legacy = f"{folder}{model}.pt"
    if legacy in names:  # torch prefers this one torch.save file to the config
        yield legacy, "pickle"
        return
    config = _required(names, f"{folder}{model}_{part}_config.json", graph)
    yield config, "text"
    document = read_json(config)
    entries = document.get("config") if isinstance(document, dict) else None
    if not isinstance(entries, dict):
        raise RefusedMember(config, "is not a payload config (no 'config' object)")
    for entry in entries.values():
        path = entry.get("path_name") if isinstance(entry, dict) else None
        pickled = entry.get("use_pickle") if isinstance(entry, dict) else None
        if not isinstance(path, str) or not _SEGMENT.fullmatch(path) or path in (".", ".."):
            raise RefusedMember(config, f"names {path!r}, which is not a member name")
        if not isinstance(pickled, bool):
            raise RefusedMember(config, f"says neither raw nor pickled for {path!r}")
        if part == "constants" and path.startswith(_OBJECT_CONSTANTS):
            raise RefusedMember(folder + path, "is a pickled Python or TorchScript object (code)")
        if part == "constants" and not path.startswith(_TENSOR_CONSTANT):
            raise RefusedMember(config, f"names {path!r}, a kind of constant torch does not know")
        yield _required(names, folder + path, config), "pickle" if pickled else "raw"


def _required(names: set[str], member: str, by: str) -> str:
    """``member``, which ``by`` makes torch read: it must exist under exactly that name."""
    if member not in names:
        raise RefusedMember(by, f"names {member!r}, which the archive does not hold")
    return member


def _legacy_plan(names: set[str]) -> dict[str, Kind]:
    """What torch.export.load's reader of the pre-2.8 layout does with each member."""
    plan: dict[str, Kind] = {}
    for name in sorted(names):
        if name in _LEGACY:
            plan[name] = _LEGACY[name]
        elif name.startswith(_LEGACY_EXTRA):
            plan[name] = "text"
        else:
            raise RefusedMember(name, "is not part of a torch.export archive (nothing reads it)")
    return plan


def _vetted_bytes(name: str, kind: Kind, data: bytes) -> bytes:
    """What torch gets for member ``name``: checked text, or a pickle torch wrote itself."""
    if kind == "graph":
        why = unsafe_graph(data)
        if why is not None:
            raise RefusedMember(name, why)
    if kind != "pickle" or not data:  # an empty pickle member is read as nothing
        return data
    try:
        value = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RefusedMember(
            name, f"is a pickle that holds more than weights ({one_line(exc)})"
        ) from None
    clean = io.BytesIO()
    torch.save(value, clean)
    return clean.getvalue()

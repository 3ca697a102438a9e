"""What in a ``torch.export`` (.pt2) archive could run code when it is loaded.

``torch.export.load`` unpickles some members without torch's weights-only
allow-list: the sample inputs (after a weights-only try fails), weights and
constants saved as pickles, opaque objects (plain ``pickle.loads``); and it
loads AOTInductor's compiled libraries. So a .pt2 from elsewhere is read here
first: every member that is a pickle, or a ``torch.save`` archive, must load
under the weights-only rules, and no member may be native code. Members the
archive's own configs declare as raw tensor bytes (``use_pickle: false``) are
never unpickled by torch and are skipped, so their bytes cannot be mistaken
for a pickle. The graph itself (JSON) may call only tensor operators
(:mod:`.exported_ops`).
"""

from __future__ import annotations

import io
import json
import pickletools
import posixpath
import re
import tarfile
import warnings
import zipfile

import torch
import torch._weights_only_unpickler as _weights_only

from .exported_ops import unsafe_graph

__all__ = ["unsafe_member"]

# Opcodes through which a pickle imports or calls something; one without any is plain data.
_CODE_OPCODES = frozenset(
    {
        *("GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD"),
        *("EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID"),
    }
)
_NATIVE_SUFFIXES = (".so", ".dll", ".dylib", ".pyd")
_ZIP_MAGIC = b"PK\x03\x04"
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def unsafe_member(archive: zipfile.ZipFile) -> tuple[str, str] | None:
    """(member, why) for the first member that could run code when loaded, else None.

    Every entry is read, duplicated names included (readers differ in which
    of two same-named entries they take).
    """
    raw = _raw_tensor_members(archive)
    for info in archive.infolist():
        if info.is_dir() or info.filename in raw:
            continue
        why = _why_unsafe(info.filename, archive.read(info))
        if why is not None:
            return info.filename, why
    return None


def _why_unsafe(name: str, data: bytes) -> str | None:
    """Why ``data`` could run code when torch loads it, or None when it cannot."""
    if name.lower().endswith(_NATIVE_SUFFIXES) or "/aotinductor/" in f"/{name}":
        return "is compiled native code (AOTInductor)"
    if name.lower().endswith(".json"):
        graph = unsafe_graph(data)  # the exported program's graph (see .exported_ops)
        if graph is not None:
            return graph
    if data.startswith(_ZIP_MAGIC):
        try:
            torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception:
            return "is a torch.save archive that holds more than weights"
        return None
    if len(data) >= 512 and tarfile.is_tarfile(io.BytesIO(data)):
        return "is a legacy (tar) torch.save archive, whose pickles are never weights-only"
    if _could_run_code(data):
        try:
            with warnings.catch_warnings():  # its note on pickle protocols is not the user's
                warnings.simplefilter("ignore")
                _weights_only.load(io.BytesIO(data))
        except Exception:
            return "is a pickle that holds more than weights"
    return None


def _could_run_code(data: bytes) -> bool:
    """Whether ``data`` read as a pickle imports or calls anything before it stops.

    Nothing is executed: ``pickletools`` only reads the opcodes, up to the
    STOP or to the first byte that is no opcode (``pickle.loads`` would run
    what came before that byte, so it counts too).
    """
    try:
        for op, _, _ in pickletools.genops(data):
            if op.name in _CODE_OPCODES:
                return True
    except Exception:  # not a pickle from here on: pickle.loads would stop here too
        pass
    return False


def _raw_tensor_members(archive: zipfile.ZipFile) -> set[str]:
    """Members that the archive's weight and constant configs declare as raw tensor bytes.

    Torch reads those with ``as_strided``, never unpickling them. Only plain
    file names beside the config count; a member that any config (any copy of
    it) declares pickled stays checked, and when a config cannot be read,
    nothing is declared raw.
    """
    raw: set[str] = set()
    pickled: set[str] = set()
    for info in archive.infolist():
        if not info.filename.endswith("_config.json"):
            continue
        try:
            entries = list(json.loads(archive.read(info))["config"].values())
        except Exception:
            return set()
        folder = posixpath.dirname(info.filename)
        for entry in entries:
            path = entry.get("path_name") if isinstance(entry, dict) else None
            if not isinstance(path, str):
                continue
            member = posixpath.join(folder, path)
            if entry.get("use_pickle") is False and _PLAIN_NAME.fullmatch(path):
                raw.add(member)
            else:
                pickled.update((member, posixpath.normpath(member)))
    return raw - pickled

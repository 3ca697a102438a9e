"""How seewhy marks the files it writes, so that a later run knows them as its own.

A command may overwrite a file it wrote before (running it again into the same
place is the common case), never a file someone else wrote, unless told to.
So every file seewhy writes carries a mark near its start: PNG pictures the
text entry ``Software: seewhy <version>`` ahead of the image data, JSON files
the first key ``"written_by": "seewhy <version>"``, HTML pages a first comment
``<!-- written by seewhy <version> -->``. :func:`written_by_seewhy` reads only
those first bytes, never a whole file, and never a pipe or device.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

from . import __version__

__all__ = ["HTML_START", "MARK", "png_mark", "written_by_seewhy"]

#: What seewhy writes into its outputs, and the prefix it recognises them by.
MARK = f"seewhy {__version__}"
#: The first line and comment of the HTML pages the demos write.
HTML_START = f"<!doctype html>\n<!-- written by {MARK} -->\n"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_STARTS = (b'{\n  "written_by": "seewhy', b"<!doctype html>\n<!-- written by seewhy")
#: PNG chunks read before giving up on finding the mark (it is written before the image data).
_PNG_CHUNKS = 64


def written_by_seewhy(path: str | Path) -> bool:
    """Whether the file at ``path`` carries seewhy's mark (see the module's docstring).

    Parameters
    ----------
    path : str or Path
        The file to check; a missing or unreadable file is not seewhy's.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_PNG_SIGNATURE))
            if head == _PNG_SIGNATURE:
                return _png_marked(handle)
            head += handle.read(max(map(len, _STARTS)) - len(head))
            return any(head.startswith(start) for start in _STARTS)
    except OSError:
        return False


def _png_marked(handle: IO[bytes]) -> bool:
    """A ``tEXt`` chunk ``Software`` starting with ``seewhy`` before the first image data."""
    for _ in range(_PNG_CHUNKS):
        header = handle.read(8)
        if len(header) < 8:
            return False
        size, kind = int.from_bytes(header[:4], "big"), header[4:]
        if kind in (b"IDAT", b"IEND") or size > 1 << 20:
            return False
        data = handle.read(size)
        handle.seek(4, os.SEEK_CUR)  # the chunk's CRC
        if kind == b"tEXt" and data.startswith(b"Software\x00seewhy"):
            return True
    return False


def png_mark() -> Any:
    """The PNG text entry that marks a picture as seewhy's (``pnginfo=`` of Pillow's save)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", MARK)
    return info

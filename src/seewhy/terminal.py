"""Text that is safe to show in a terminal: names and messages that came from files.

Class names (ONNX metadata, Keras output names, ``id2label``), layer names
and file names are chosen by whoever made the model or the data. Printed raw,
an ESC sequence in one of them clears the screen, retitles the window or
rewrites earlier lines, and a bidi override (U+202E) shows ``gpj.exe`` as
``exe.jpg``. Everything seewhy prints to a terminal, and ``repr`` of its
results, goes through :func:`printable` (a name, a path) or :func:`one_line`
(a message), so such characters show as visible escapes instead of acting.
"""

from __future__ import annotations

import re

__all__ = ["one_line", "printable"]

#: What must not reach a terminal as it is: C0 controls (newline and tab too: a name is
#: one line), DEL and C1 controls (0x9b is a one-byte CSI), the Unicode line and paragraph
#: separators, bidi marks, embeddings, overrides and isolates, and lone surrogates (the
#: bytes of a file name that is not UTF-8, as ``os.fsdecode`` keeps them).
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` with every control, bidi and stray surrogate character written as an escape.

    ``"\\x1b[2J"`` becomes the seven visible characters ``\\x1b[2J``; letters of
    any script, emoji and backslashes stay as they are.
    """
    return _UNSAFE.sub(_escape, str(text))


def one_line(text: object) -> str:
    """A message as one printable line: line breaks and runs of spaces become one space.

    For error messages, whose text may come from a framework (several lines, a
    stack of notes) or quote a hostile name.
    """
    return printable(" ".join(str(text).split()))

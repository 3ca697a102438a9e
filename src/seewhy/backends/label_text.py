"""Class names written as text inside a model file, read without evaluating anything.

A model file's metadata is its author's text. ``ast.literal_eval`` on it
runs Python's whole expression parser: 1 KB of nested brackets exhausted it
(a bare ``MemoryError`` / ``RecursionError`` out of ``seewhy.explain``). The
names real exports write are flat, so only flat forms are read, by a scanner
with no recursion and fixed limits on length and count:

* a list or tuple of names, JSON or Python quoting: ``["cat", 'dog']``;
* a dict of class index to name, as Ultralytics writes it: ``{0: 'cat', 1: 'dog'}``
  (the indices must be exactly 0..n-1, or the names would sit on other classes);
* anything not starting with a bracket: a comma-separated line ``cat, dog``.
"""

from __future__ import annotations

import ast
import json
import re
import warnings

__all__ = ["MAX_NAMES", "MAX_TEXT", "NotNames", "parse_names"]

#: Longest text read as names (ImageNet-21k's 21,843 WordNet names are ~0.5 MB).
MAX_TEXT = 8 << 20
#: Most names read; a model with more classes names them some other way.
MAX_NAMES = 1 << 20

_CLOSING = {"[": "]", "(": ")", "{": "}"}
_SPACE = re.compile(r"\s*")
# one quoted string, unrolled so that a long one is matched without backtracking
_STRING = re.compile(r'"[^"\\\n]*(?:\\.[^"\\\n]*)*"|\'[^\'\\\n]*(?:\\.[^\'\\\n]*)*\'')
_INDEX = re.compile(r"[0-9]+")


class NotNames(ValueError):
    """The text is bracketed but is not a flat list or index->name dict; says why in one line."""


def parse_names(text: str) -> tuple[str, ...]:
    """The class names ``text`` writes, in class order; :class:`NotNames` when it cannot be read."""
    text = text.strip()
    if len(text) > MAX_TEXT:
        raise NotNames(f"it is {len(text):,} characters long, more than the {MAX_TEXT:,} read")
    if not text or text[0] not in _CLOSING:
        names = [part.strip() for part in text.split(",", MAX_NAMES)]
        if len(names) > MAX_NAMES:
            raise NotNames(f"it lists more than {MAX_NAMES:,} names")
        return tuple(names)
    return _Scanner(text).container()


class _Scanner:
    """Reads one flat container from the start of the text to its end, token by token."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def container(self) -> tuple[str, ...]:
        opening = self.text[0]
        closing = _CLOSING[opening]
        self.pos = 1
        names: list[str] = []
        indices: list[int] = []
        while not self._take(closing):
            if len(names) >= MAX_NAMES:
                raise NotNames(f"it lists more than {MAX_NAMES:,} names")
            if opening == "{":
                indices.append(self._index())
                self._expect(":")
            names.append(self._string())
            if not self._take(","):
                self._expect(closing)
                break
        if self._skip_space() < len(self.text):
            raise NotNames(f"text follows the closing {closing!r} at character {self.pos}")
        return _in_class_order(names, indices) if opening == "{" else tuple(names)

    def _skip_space(self) -> int:
        match = _SPACE.match(self.text, self.pos)
        self.pos = match.end() if match else self.pos
        return self.pos

    def _take(self, token: str) -> bool:
        if self.text.startswith(token, self._skip_space()):
            self.pos += len(token)
            return True
        return False

    def _expect(self, token: str) -> None:
        if not self._take(token):
            raise NotNames(f"expected {token!r} at character {self.pos}, found {self._here()}")

    def _here(self) -> str:
        return repr(self.text[self.pos : self.pos + 12]) if self.pos < len(self.text) else "the end"

    def _string(self) -> str:
        match = _STRING.match(self.text, self._skip_space())
        if match is None:
            raise NotNames(f"expected a quoted name at character {self.pos}, found {self._here()}")
        self.pos = match.end()
        return _unquote(match.group())

    def _index(self) -> int:
        start = self._skip_space()
        quote = self.text[start : start + 1] if self.text[start : start + 1] in "\"'" else ""
        match = _INDEX.match(self.text, start + len(quote))
        end = match.end() if match else -1
        if match is None or (quote and not self.text.startswith(quote, end)):
            raise NotNames(f"expected a class index at character {start}, found {self._here()}")
        self.pos = end + len(quote)
        return int(match.group())


def _unquote(token: str) -> str:
    """One quoted string's value: JSON's escapes for "...", Python's for '...' (or JSON's fail)."""
    if token[0] == '"':
        try:
            value = json.loads(token)
            return str(value)
        except ValueError:
            pass
    try:
        with warnings.catch_warnings():  # an unknown escape such as \d is kept, as Python does
            warnings.simplefilter("ignore")
            value = ast.literal_eval(token)  # one string literal, matched by _STRING: no nesting
    except (ValueError, SyntaxError):
        raise NotNames(f"the name {token[:24]!r}... has a broken escape") from None
    return str(value)


def _in_class_order(names: list[str], indices: list[int]) -> tuple[str, ...]:
    """A dict's names ordered by index, refused unless the indices are exactly 0..n-1."""
    if sorted(indices) != list(range(len(indices))):
        raise NotNames(f"its keys are not the class indices 0..{len(indices) - 1}, each once")
    ordered = [""] * len(names)
    for index, name in zip(indices, names, strict=True):
        ordered[index] = name
    return tuple(ordered)

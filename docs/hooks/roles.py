"""mkdocs hook: Sphinx roles in docstrings become links (or plain code), never raw markup.

The docstrings cross-reference in reStructuredText (``:func:`deletion```,
``:class:`~seewhy.errors.InvalidInput```), which ``help()`` and editors read
well but Markdown leaves as ``:func:`` followed by code. Each role is turned
into the code it names, linked where the site documents that object: a name
that is not a full path is looked up from the object whose section it is in,
then from each enclosing module, as Python would find it. ``~`` shows only the
last part of the name, as in Sphinx.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import griffe

_ROLE = re.compile(r":(?P<role>[a-z]+):<code>(?P<short>~?)\.?(?P<name>[^<]*?)(?:\(\))?</code>")
_SECTION = re.compile(r'id="(seewhy(?:\.\w+)*)"')
_LINKED = frozenset({"func", "class", "meth", "mod", "data", "attr", "exc", "obj"})


@functools.cache
def _package() -> Any:
    """seewhy read from source as the site reads it: nothing is imported (``seewhy.keras``
    would load TensorFlow, which crashes after torch)."""
    return griffe.load("seewhy", search_paths=[str(Path(__file__).parents[2] / "src")])


def _canonical(path: str) -> str | None:
    """Where the object ``path`` names is defined (an import followed to its source), if any."""
    try:
        found = _package()[path.removeprefix("seewhy.")]
        return str(found.final_target.path if found.is_alias else found.path)
    except Exception:  # no such member, or an alias to outside the package
        return None


def _target(name: str, context: str | None) -> str | None:
    """The object ``name`` means inside the section ``context``, as Python would find it."""
    if name.startswith("seewhy."):
        return _canonical(name)
    scopes = context.split(".") if context else []
    for cut in range(len(scopes), 0, -1):
        found = _canonical(".".join([*scopes[:cut], name]))
        if found is not None:
            return found
    return None


def _replace(match: re.Match[str], html: str) -> str:
    name = match["name"]
    shown = name.rsplit(".", 1)[-1] if match["short"] else name
    code = f"<code>{shown}</code>"
    if match["role"] not in _LINKED or not re.fullmatch(r"[\w.]+", name):
        return code
    sections = _SECTION.findall(html, 0, match.start())
    target = _target(name, sections[-1] if sections else None)
    if target is None:
        return code
    # optional: autorefs shows the code unlinked when the site has no section for it
    return f'<autoref identifier="{target}" optional>{code}</autoref>'


def on_page_content(html: str, **kwargs: Any) -> str:
    """Replace every role on the page; autorefs then resolves the links across the site."""
    return _ROLE.sub(lambda match: _replace(match, html), html)

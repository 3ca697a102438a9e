"""Warnings that point at the user's line, whatever path inside seewhy raised them.

A fixed ``stacklevel`` is right for one call path only: the same warning
reached through ``seewhy.explain``, an ``Explainer``, a metric or the audit
has a different number of seewhy frames above it, and a wrong count names a
line of seewhy's own (which Python's default filter then shows once for every
user). :func:`warn_user` counts them. A warning is printed to the user's
terminal by Python itself and may quote a class, layer or file name from a
stranger's file, so its text goes out through :func:`seewhy.terminal.printable`.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

from ..errors import InvalidInput
from ..terminal import printable

__all__ = ["renamed_keyword", "warn_once", "warn_user"]

# .../seewhy/ as imported (unresolved, as the frames of its modules name their files)
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside the seewhy package."""
    level, frame = 1, sys._getframe(0)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    warnings.warn(printable(message), category, stacklevel=level)


#: Messages :func:`warn_once` has shown in this process.
_SHOWN: set[str] = set()


def warn_once(message: str, category: type[Warning] = DeprecationWarning) -> None:
    """:func:`warn_user` once per process per message: a deprecation said every call is noise."""
    if message not in _SHOWN:
        _SHOWN.add(message)
        warn_user(message, category)


def renamed_keyword(where: str, old: str, new: str, old_value: Any, new_value: Any) -> Any:
    """The value of a keyword renamed from ``old`` to ``new``, kept one release.

    ``old_value`` is None when the old spelling was not passed, ``new_value``
    None when the new one was left at its default (the caller passes None
    then). The old spelling still works, with one :class:`DeprecationWarning`
    per process naming the new one; both together is a one-line error.
    """
    if old_value is None:
        return new_value
    if new_value is not None:
        raise InvalidInput(
            f"{where}: {old}= is the old name of {new}=; pass only {new}= (the same values)"
        )
    warn_once(
        f"{where}: {old}= is deprecated and will be removed in the next release; "
        f"use {new}= (the same values)"
    )
    return old_value

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

from ..terminal import printable

__all__ = ["warn_user"]

# .../seewhy/ as imported (unresolved, as the frames of its modules name their files)
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside the seewhy package."""
    level, frame = 1, sys._getframe(0)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    warnings.warn(printable(message), category, stacklevel=level)
